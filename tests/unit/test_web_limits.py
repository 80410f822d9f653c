"""Request bodies are capped before any route reads them (uploads have their own cap)."""

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from appliance.web.limits import REQUEST_BYTES, BodyLimit


class Question(BaseModel):
    text: str


def app_with_limit(max_upload_bytes: int) -> FastAPI:
    app = FastAPI()
    seen: list[int] = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, int]:
        seen.append(len(await request.body()))
        return {"bytes": seen[-1]}

    @app.post("/v1/models-like")
    async def typed(body: Question) -> dict[str, int]:
        return {"chars": len(body.text)}

    @app.post("/ui/gradio_api/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(BodyLimit, max_upload_bytes=max_upload_bytes)
    app.state.seen = seen
    return app


def test_a_5_mb_question_is_refused_before_the_route_reads_it() -> None:
    app = app_with_limit(10_000_000)
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", content=b"x" * 5_000_000)
        assert response.status_code == 413
        assert "shorter question" in response.json()["error"]["message"]
        assert app.state.seen == []
        assert client.post("/v1/chat/completions", content=b"x" * 1000).json() == {"bytes": 1000}


def test_a_body_without_a_length_is_cut_off_at_the_cap() -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    app = app_with_limit(10_000_000)
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", content=chunks())
        assert response.status_code == 413
        # A route with a typed body: FastAPI reads it, and answers 413 too (not "cannot parse").
        typed = client.post("/v1/models-like", content=chunks())
        assert typed.status_code == 413, typed.text
    assert REQUEST_BYTES < 40 * 65536


def test_uploads_have_the_file_size_cap_not_the_question_cap() -> None:
    app = app_with_limit(3_000_000)
    with TestClient(app) as client:
        assert client.post("/ui/gradio_api/upload", content=b"z" * 2_000_000).status_code == 200
        assert client.post("/ui/gradio_api/upload", content=b"z" * 4_000_000).status_code == 413
