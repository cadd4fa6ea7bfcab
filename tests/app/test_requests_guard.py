"""A raw request's body is read only up to the limit: refused from its Content-Length, or as soon
as the streamed bytes pass the limit, with a 413 and one sentence (a 100 MB JSON body used to
be read whole: +528 MiB)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app import requests_guard as rg


def app(read: list) -> Starlette:
    async def echo(request):
        body = await request.body()
        read.append(len(body))
        return JSONResponse({"got": len(body)})

    return Starlette(
        routes=[Route("/call", echo, methods=["POST"]), Route("/gradio_api/upload", echo, methods=["POST"])],
        middleware=[Middleware(rg.BodyLimit, max_bytes=1000)],
    )


def test_a_body_under_the_limit_is_read():
    read = []
    assert TestClient(app(read)).post("/call", content=b"x" * 1000).json() == {"got": 1000}


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    read = []
    r = TestClient(app(read)).post("/call", content=b"x" * 1001)
    assert r.status_code == 413 and r.json()["detail"] == rg.TOO_LARGE and read == []


def test_a_streamed_body_is_refused_once_it_passes_the_limit():
    read = []

    def body():
        for _ in range(100):
            yield b"x" * 100

    r = TestClient(app(read)).post("/call", content=body())  # chunked: no Content-Length
    assert r.status_code == 413 and rg.TOO_LARGE in r.text and read == []


def test_uploads_are_left_to_gradios_own_limit():
    read = []
    assert TestClient(app(read)).post("/gradio_api/upload", content=b"x" * 5000).json() == {"got": 5000}


def test_the_limit_admits_a_full_batch_of_data_uris():
    from app.batch import MAX_BATCH_BYTES

    assert MAX_BATCH_BYTES * 4 / 3 < rg.MAX_BODY_BYTES < 100 * 2**20
