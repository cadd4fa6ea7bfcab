"""The settings of an analysis: ``Settings`` is the controls' values, the one value every handler
takes; ``Controls`` the components behind them (built by ``components/controls.py``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import gradio as gr

from hvl_core.head import HVLConfig

from .service import DEFAULT_PRESET, checkpoint_ref

#: the head's defaults (the paper's), the one place they are set
HEAD = HVLConfig()


@dataclass(frozen=True)
class Settings:
    """What the controls say, in one value the handlers take."""

    preset: str = DEFAULT_PRESET
    custom: str = ""
    checkpoint_text: str = ""
    checkpoint_files: tuple = ()
    n: int = HEAD.n
    threshold: float | None = None
    k: int = HEAD.k
    entropy_filter: bool = HEAD.entropy_filter
    renormalize: bool = HEAD.renormalize
    score: str | None = None  # None: the model's own
    backbone: str = ""  # "": the server's own

    @property
    def checkpoint(self) -> tuple | None:
        return checkpoint_ref(self.checkpoint_text, self.checkpoint_files)


@dataclass
class Controls:
    """The components behind each ``Settings`` field (same names)."""

    preset: gr.Radio
    custom: gr.Textbox
    checkpoint_text: gr.Textbox
    checkpoint_files: gr.File
    n: gr.Slider
    threshold: gr.Slider
    k: gr.Slider
    entropy_filter: gr.Checkbox
    renormalize: gr.Checkbox
    score: gr.Radio | None = None
    backbone: gr.Dropdown | None = None

    def components(self) -> list:
        return [c for c in (getattr(self, f.name) for f in fields(self)) if c is not None]

    def read(self, values: dict) -> Settings:
        """The ``Settings`` in a handler's input dict (gradio passes ``{component: value}``)."""
        v = {
            f.name: values.get(getattr(self, f.name)) if getattr(self, f.name) is not None else None
            for f in fields(self)
        }
        return Settings(
            preset=v["preset"] or DEFAULT_PRESET,
            custom=v["custom"] or "",
            checkpoint_text=v["checkpoint_text"] or "",
            checkpoint_files=tuple(str(f) for f in (v["checkpoint_files"] or []) if f),
            n=int(v["n"] or HEAD.n),
            threshold=None if v["threshold"] is None else float(v["threshold"]),
            k=int(v["k"] or 1),
            entropy_filter=bool(v["entropy_filter"]),
            renormalize=bool(v["renormalize"]),
            score=v["score"] or None,
            backbone=v["backbone"] or "",
        )
