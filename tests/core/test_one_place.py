"""One place per default: the head's defaults live in ``HVLConfig`` (hvl_core/config.py) and the scores in the score
registry; nothing else in the code writes them down again."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("app", "hvl_core", "hvl_tools") for p in (ROOT / d).rglob("*.py"))
#: the places the defaults are written
HOMES = {"hvl_core/config.py", "hvl_core/scores.py"}
#: what writing a default down again looks like
COPIES = {
    "the mid grid n": r"\bn\s*:\s*int\s*=\s*\d|DEFAULT_N\s*=\s*\d|\bn_v or \d",
    "K": r"\bk_v or \d|\bk\s*=\s*int\([^)]*or [2-9]\)",
    "tau": r"\btau\s*(:\s*float)?\s*=\s*0?\.01\b",
    "the energy temperature": r"\benergy_t\s*(:\s*float)?\s*=\s*1(\.0)?\b",
    "the MSP default threshold": r"DEFAULT_THRESHOLD\s*=\s*0?\.5\b",
    "the list of scores": r"""["']msp["'],\s*["']energy["'],\s*["']maxlogit["']""",
}


@pytest.mark.parametrize("what", COPIES)
def test_defaults_are_written_once(what):
    pattern = re.compile(COPIES[what])
    copies = []
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        if rel in HOMES:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                copies.append(f"{rel}:{i}: {line.strip()}")
    assert not copies, f"{what} is set outside {sorted(HOMES)}:\n" + "\n".join(copies)


def test_the_homes_hold_them():
    # the pattern list finds the real definitions, so an empty result above means something
    head = (ROOT / "hvl_core/config.py").read_text()
    assert re.search(COPIES["the mid grid n"], head) and re.search(COPIES["tau"], head)
    assert re.search(COPIES["the energy temperature"], head)
