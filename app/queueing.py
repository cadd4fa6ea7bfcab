"""The queue of a public server: how many requests may wait, and the concurrency groups."""

from __future__ import annotations

#: the queue: requests waiting at most, and the concurrency groups (one encoder run at a time per
#: group; browser events and the API have a group each, so neither can lock the other out)
QUEUE_MAX_SIZE = 256
BROWSER_GROUP, API_GROUP = "model", "api"


def configure_queue(demo, max_size: int = QUEUE_MAX_SIZE):
    """The queue for a public server: up to ``max_size`` waiting requests (20 clients × 5
    requests all queue), one encoder run at a time per group, and the API (``/predict``) in a
    group of its own so API clients and browser users each get a turn (gradio draws the next
    group at random among those with a free slot)."""
    for fn in demo.fns.values():
        if fn.api_name == "predict":
            fn.concurrency_id = API_GROUP
    demo.queue(default_concurrency_limit=1, max_size=max_size)
    return demo
