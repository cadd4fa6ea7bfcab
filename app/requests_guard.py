"""What a raw HTTP request may make the server do: read a body only up to ``MAX_BODY_BYTES``
(``BodyLimit``, an ASGI middleware on gradio's app), and a call that sends too few values gets
a sentence (``refuse_missing_values``) where gradio printed every value it was sent — a data:
URI whole, an upload's path — and answered ``{"error": null}``."""

from __future__ import annotations

import inspect
import json

from starlette.exceptions import HTTPException

from .batch import MAX_BATCH_BYTES

#: the largest body read: a /batch of 64 MB of images as data: URIs (base64: 4/3) and its JSON;
#: uploads are exempt (gradio's upload route streams them to disk under ``max_file_size``)
MAX_BODY_BYTES = MAX_BATCH_BYTES * 4 // 3 + 4 * 2**20
TOO_LARGE = (
    f"the request's body is over {MAX_BODY_BYTES // 2**20} MiB; send fewer or smaller images "
    "(or upload files: gradio_client's handle_file)"
)


class BodyLimit:
    """Refuses (413, one sentence) a request whose body is over ``max_bytes``: from its
    Content-Length before anything is read, else as soon as the bytes streamed in pass it."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, exempt: tuple[str, ...] = ("/upload",)):
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith(self.exempt):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await refuse(send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, TOO_LARGE)  # FastAPI and Starlette answer it as a 413
            return message

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except HTTPException as e:  # raised where no route answers it
            if e.status_code != 413 or started:
                raise
            await refuse(send)


async def refuse(send) -> None:
    body = json.dumps({"detail": TOO_LARGE}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def refuse_missing_values(demo) -> None:
    """A call with fewer values than its endpoint takes fails with a sentence naming how many
    and which (gradio's own check prints the values sent, and the answer hides its message)."""
    import gradio as gr

    def validate_inputs(block_fn, inputs):
        wanted = len(block_fn.inputs)
        if len(inputs) < wanted:
            raise gr.Error(
                f"this endpoint takes {wanted} values{_parameters(block_fn.fn, wanted)} and the call sent "
                f"{len(inputs)}: send them all, in order (gradio_client fills in the defaults)",
                print_exception=False,
            )

    demo.validate_inputs = validate_inputs


def _parameters(fn, count: int) -> str:
    """`` (a, b, c)``: the parameter names of an API function taking ``count`` values, else ""."""
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ""
    return f" ({', '.join(names)})" if len(names) == count else ""
