"""The HVL clinician and teaching demo (Gradio). ``app.layout.build_demo`` builds it, ``app.py`` at the
repository root launches it. ``components/`` render the page's parts and wire their events to
``handlers``; ``figures`` (HTML) and ``render`` (pixels) draw, ``decision``, ``teaching`` and
``messages`` write, ``service`` holds the models; none of them computes HVL's numbers — they
come from ``hvl_core``."""
