"""A scripted OpenAI-compatible LLM server on loopback, for tests whose subject is what the
appliance does with a model's words (rendering, auditing), not the words a real model picks.

It serves `/v1/models` and streamed `/v1/completions` (the appliance's completion mode); every
prompt gets the same answer. Tokenizer routes answer 404, so the appliance estimates tokens.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _handler(answer: str, prompts: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, json.dumps({"data": [{"id": "scripted"}]}).encode())
            else:
                self._send(404, b"{}")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            if self.path != "/v1/completions":
                self._send(404, b"{}")
                return
            prompts.append(str(body.get("prompt", "")))
            words = answer.split(" ")
            pieces = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
            events = [{"choices": [{"text": p, "finish_reason": None}]} for p in pieces]
            events.append({"choices": [{"text": "", "finish_reason": "stop"}]})
            stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(200, stream.encode(), "text/event-stream")

    return Handler


@contextmanager
def scripted_llm(answer: str) -> Iterator[tuple[str, list[str]]]:
    """(the API base for APPLIANCE_LLM_URL, the prompts received so far) while running."""
    prompts: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(answer, prompts))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", prompts
    finally:
        server.shutdown()
        server.server_close()
