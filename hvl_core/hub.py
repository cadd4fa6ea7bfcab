"""Hugging Face hub access that fails fast and clearly when the hub cannot be reached."""
from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host answers a TCP connect (no request is sent)."""
    import huggingface_hub.constants as hc

    if hc.HF_HUB_OFFLINE:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_unless_reachable():
    """Within this block the hub client serves from its local cache only when the hub is
    unreachable, so a missing file fails at once instead of after minutes of retries."""
    import huggingface_hub.constants as hc

    saved = hc.HF_HUB_OFFLINE
    if not saved and not hub_reachable():
        hc.HF_HUB_OFFLINE = True
    try:
        yield hc.HF_HUB_OFFLINE
    finally:
        hc.HF_HUB_OFFLINE = saved
