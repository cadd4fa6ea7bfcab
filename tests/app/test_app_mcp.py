"""The public API as its clients meet it: the app launched in a thread, driven through the ``mcp``
package's client (the tools ``hvl_predict`` and ``hvl_batch``) and through ``gradio_client``
(``/predict`` and ``/batch``): described parameters, JSON answers with a pinned key set, and a
sentence for every malformed call."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from app import api, layout  # noqa: E402
from app.service import ModelService  # noqa: E402

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SKIN = ROOT / "assets" / "skin_nevus_closeup.jpg"
OOD = ROOT / "assets" / "ood_ct_vertebra.png"


def documented_fields() -> list[str]:
    """The field names of the answer table in the README's "The API" section, in order."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("always with these fields (pinned by") :].split("\n\n")[1]
    return [f for row in table.splitlines()[2:] for f in re.findall(r"`(\w+)`", row.split("|")[1])]


#: the documented answer of /predict (and of each /batch row)
FIELDS = documented_fields()


def data_uri(path: Path) -> str:
    kind = "png" if path.suffix == ".png" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def served(tiny_backbone):
    """The app launched in a thread: (its URL, the ``gr.Blocks``)."""
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    demo = layout.build_demo(svc)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kw = layout.launch_kwargs("127.0.0.1", port)
    assert kw["mcp_server"], "the mcp package is installed, so the app is an MCP server"
    demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app_url(served):
    return served[0]


def mcp_session(url: str, calls):
    """Run ``calls(session)`` (async) in an MCP client session against the app; its result."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def go():
        async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await calls(session)

    return asyncio.run(go())


def test_mcp_client_lists_both_tools_with_described_parameters(app_url):
    async def calls(s):
        return (await s.list_tools()).tools

    tools = {t.name: t for t in mcp_session(app_url, calls)}
    assert set(tools) == {"hvl_predict", "hvl_batch"}  # the page's own events are no tools
    for name, params in (
        ("hvl_predict", ["image", "preset", "classes", "score", "threshold"]),
        ("hvl_batch", ["images", "preset", "classes", "score", "threshold"]),
    ):
        schema = tools[name].inputSchema
        assert list(schema["properties"]) == params
        assert schema["required"] == params[:1]  # the image(s) only; the threshold may be omitted
        for p, prop in schema["properties"].items():
            assert len(prop.get("description", "")) > 30, (name, p)  # every parameter says what it is
        assert "$defs" not in json.dumps(schema)  # no pointer for a validator to miss
        assert "data: URI" in schema["properties"][params[0]]["description"]
        assert "model's own" in schema["properties"]["threshold"]["description"]
        assert {"type": "null"} in schema["properties"]["threshold"]["oneOf"]  # null: the model's own
        assert "known" in tools[name].description and "JSON" in tools[name].description
    assert schema["properties"]["images"]["items"] == {"type": "string"}


def test_mcp_tools_answer_json_verdicts(app_url):
    skin, ood = data_uri(SKIN), data_uri(OOD)

    async def calls(s):
        return (
            await s.call_tool("hvl_predict", {"image": skin}),
            await s.call_tool("hvl_predict", {"image": skin, "threshold": None, "score": "msp"}),
            await s.call_tool("hvl_predict", {"image": skin, "classes": "melanoma, nevus", "threshold": 0.99}),
            await s.call_tool("hvl_batch", {"images": [skin, ood, "not an image"]}),
            await s.call_tool("hvl_predict", {"image": skin, "threshold": "abc"}),
            await s.call_tool("hvl_predict", {"image": "/etc/passwd"}),
            await s.call_tool("hvl_predict", {"image": "https://127.0.0.1/x.png"}),
        )

    one, null_thr, custom, rows, bad_thr, path, local = mcp_session(app_url, calls)
    assert not one.isError
    pred = json.loads(one.content[0].text)
    assert list(pred) == FIELDS and pred["error"] is None
    assert pred["verdict"] == ("known" if pred["score"] >= pred["threshold"] else "unknown")
    assert pred["known"] == (pred["verdict"] == "known") and pred["label"] == pred["top"][0]["class"]
    assert pred["threshold_source"] == "default" and pred["score_name"] == "msp"  # the model's own
    assert pred["classes"] == ["melanocytic nevus", "melanoma", "dermatofibroma", "vascular lesion"]
    assert json.loads(null_thr.content[0].text)["threshold"] == pred["threshold"]
    c = json.loads(custom.content[0].text)
    assert c["classes"] == ["melanoma", "nevus"] and c["threshold"] == 0.99 and c["threshold_source"] == "given"
    assert c["verdict"] == "unknown"  # no MSP of two classes reaches 0.99 with this head
    batch = json.loads(rows.content[0].text)
    assert [r["file"] for r in batch] == ["image 1", "image 2", "image 3"]
    assert all(list(r) == FIELDS for r in batch)
    assert batch[0]["score"] == pytest.approx(pred["score"], abs=1e-5)  # the same image, batched or not
    assert batch[1]["error"] is None and batch[1]["verdict"] in ("known", "unknown")
    assert batch[2]["verdict"] is None and "data: URI" in batch[2]["error"]
    assert bad_thr.isError and "abc" in bad_thr.content[0].text
    assert path.isError and "server paths are not read" in path.content[0].text
    assert local.isError and "public URL" in local.content[0].text


def test_gradio_client_predict_and_batch(app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False, analytics_enabled=False)
    out = json.loads(client.predict(data_uri(SKIN), api_name="/predict"))
    assert list(out) == FIELDS and tuple(FIELDS) == api.PREDICT_FIELDS
    uploaded = json.loads(client.predict(handle_file(str(SKIN)), "histology-nct-crc", api_name="/predict"))
    assert uploaded["file"] == SKIN.name and len(uploaded["classes"]) == 8  # background is a negative class
    flipped = json.loads(client.predict(data_uri(SKIN), threshold=out["score"] + 1e-3, api_name="/predict"))
    assert flipped["verdict"] == "unknown" and flipped["score"] == pytest.approx(out["score"])
    rows = json.loads(client.predict([data_uri(SKIN), data_uri(OOD)], threshold=0.2, api_name="/batch"))
    assert [r["threshold"] for r in rows] == [0.2, 0.2] and all(r["known"] == (r["score"] >= 0.2) for r in rows)
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"%PDF-1.4 definitely not a png")
    malformed = [
        (dict(image="abc"), "https:// URL or a data: URI"),
        (dict(image=123), "https:// URL or a data: URI"),
        (dict(image=data_uri(SKIN), threshold="abc"), "threshold must be a number"),
        (dict(image=data_uri(SKIN), threshold=7), "outside the range of the msp score"),
        (dict(image=data_uri(SKIN), score="foo"), "unknown score 'foo'"),
        (dict(image=data_uri(SKIN), preset="radiology"), "unknown class set"),
        (dict(image=data_uri(SKIN), classes="a, a"), "only once"),
        (dict(image="data:image/png;base64,@@@"), "not valid base64"),
        (dict(image=handle_file(str(bad))), "not an image this app can read"),
    ]
    for kwargs, message in malformed:
        with pytest.raises(AppError, match=message):
            client.predict(**kwargs, api_name="/predict")
    with pytest.raises(AppError, match="as a list"):
        client.predict([], api_name="/batch")
    with pytest.raises(AppError, match="at most 32"):
        client.predict([data_uri(OOD)] * 33, api_name="/batch")
    assert json.loads(client.predict(data_uri(SKIN), api_name="/predict")) == out  # still serving, same answer


def raw_call(url: str, endpoint: str, data: list) -> str:
    """``POST /gradio_api/call/<endpoint>`` with ``data`` as sent (no client-side upload), then its
    event stream as text."""
    import urllib.request

    req = urllib.request.Request(
        f"{url}gradio_api/call/{endpoint}",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event}", timeout=120) as r:
        return r.read().decode()


def test_a_server_path_is_never_read(app_url):
    secret = Path("/etc/hostname")
    for image in (
        str(secret),
        {"path": str(secret)},
        {"path": str(secret), "meta": {"_type": "gradio.FileData"}},  # gradio checks its upload folder
        {"path": "file:///etc/hostname", "meta": {"_type": "gradio.FileData"}},
    ):
        text = raw_call(app_url, "predict", [image, "dermatology-isic4", "", "auto", None])
        assert "event: error" in text and "event: complete" not in text, (image, text)
        assert secret.read_text().strip() not in text.replace("event: error", "")
    ok = raw_call(app_url, "predict", [data_uri(SKIN), "dermatology-isic4", "", "auto", None])
    assert "event: complete" in ok and '\\"verdict\\"' in ok  # the same call with an image answers


def test_a_raw_call_with_too_few_values_gets_a_sentence(app_url, capfd):
    """It answered {"error": null}, and gradio printed every value sent (a data: URI whole)."""
    text = raw_call(app_url, "predict", ["data:image/png;base64,QUJDRA=="])
    assert (
        "event: error" in text
        and "takes 5 values (image, preset, classes, score, threshold)" in text
        and "null" not in text.split("event: error")[1]
    )
    out, err = capfd.readouterr()
    assert "QUJDRA" not in out + err


def test_a_100_mb_body_is_refused_before_it_is_read(app_url):
    from app.requests_guard import TOO_LARGE

    host, port = app_url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /gradio_api/call/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n" + b'{"data": ["' + b"A" * 65536
        )
        answer = b""
        while TOO_LARGE.encode() not in answer:  # the headers and the body may come in two reads
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.decode().startswith("HTTP/1.1 413") and TOO_LARGE in answer.decode()


def test_gradio_keeps_as_many_sessions_as_the_image_store(served):
    """gradio kept every session's inputs and outputs until 10,000 sessions: memory grew by
    2.7-4.5 MiB per session without levelling off."""
    from app.sessions import MAX_SESSIONS

    url, demo = served
    for _ in range(MAX_SESSIONS + 6):  # each raw call is a session of its own
        raw_call(url, "predict", [])
    assert len(demo.state_holder.session_data) == MAX_SESSIONS
