"""HVL demo — the Gradio app (Hugging Face Space entry point; locally: ``scripts/demo.sh``).

Environment:
  HVL_BACKBONE        backbone (default ``auto``: CLIP ViT-B/16 when its weights can be had, else
                      the offline ``medmnist-densenet121``; ``tiny-clip-random`` for quick tests)
  HVL_DEVICE          ``auto`` (default: a GPU when present), ``cpu``, ``cuda``
  GRADIO_SERVER_NAME  address to listen on (default 127.0.0.1; a Space sets 0.0.0.0)
  GRADIO_SERVER_PORT  port (default 7860)
  HVL_ALLOW_CUSTOM_BACKBONES  1: on a public server, a checkpoint may build any registered
                      backbone (default: only the server's own and the ones the page offers)
"""

import os

# glibc's malloc: one arena (per-thread arenas grew the server with every session) and the
# encoder's activations kept in the heap (mmap'd afresh each call they cost ~25%); set before any
# thread starts (hvl_core/allocator.py)
from hvl_core.allocator import tune_malloc  # noqa: E402

tune_malloc()

# privacy: no analytics, no version check, no hub telemetry; set before gradio is imported
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# uploads in a folder of this process's own (0700), removed when it stops (SIGTERM, SIGINT, exit);
# set before gradio is imported, which reads GRADIO_TEMP_DIR (app/uploads.py)
from app.uploads import private_upload_dir  # noqa: E402

UPLOADS = private_upload_dir()

import ipaddress  # noqa: E402

from app.layout import build_demo, launch_kwargs  # noqa: E402
from app.logs import configure_logging  # noqa: E402
from app.service import ModelService, start_sweeper  # noqa: E402

configure_logging(UPLOADS)  # no upload name or path in the log; file readers in one line


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_launch = launch_kwargs()
# checkpoint folders on the server's disk may be named only when the app listens on this machine alone
service = ModelService(allow_local_checkpoints=_is_loopback(_launch["server_name"]))
demo = build_demo(service)

if __name__ == "__main__":
    start_sweeper(UPLOADS)
    demo.launch(**_launch)
