"""The HVL clinician and teaching demo (Gradio): ``app.ui.build_demo`` builds it, ``app.py`` at the
repository root launches it. ``render`` draws, ``decision`` and ``teaching`` write, ``service``
holds the models; none of them computes HVL's numbers — they come from ``hvl_core``."""
