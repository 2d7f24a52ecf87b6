"""A fake OpenAI-compatible server: POST /v1/chat/completions (with SSE streaming) and /v1/embeddings.

Point the real SDK at it with ``OpenAI(api_key="test-key", base_url=server.url + "/v1")``.

The chat reply is scripted per test: ``server.reply("text")`` queues replies (one per
request, the last repeats), ``server.reply_with(fn)`` computes one from the request JSON.
Without a script the reply is the default below: it cites passage [1] when the prompt
carries passages and answers NOT_FOUND otherwise. Streaming sends the reply a few
characters per event. A wrong key gets 401 with the key echoed in the message, as the real
API does, so tests can check that our errors never repeat it.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bot.prompt import NOT_FOUND
from tests.fakes.provider_base import BadRequest, FakeServer, Reply, Request, hashed_embedding, sse

ReplyFn = Callable[[dict[str, Any]], str]

_PASSAGE = re.compile(r'<passage n="(\d+)"[^>]*>\n\[\d+\] (.*?)\n</passage>', re.S)


def default_reply(body: dict[str, Any]) -> str:
    """Quote the first sentence of passage [1] with a citation, or NOT_FOUND when there are none."""
    prompt = str(body["messages"][-1].get("content", ""))
    passages = _PASSAGE.findall(prompt)
    if not passages:
        return NOT_FOUND
    first = passages[0][1].split(". ")[0].strip().rstrip(".")
    return f"According to the documentation, {first} [1]."


class FakeOpenAI(FakeServer):
    """Chat completions and embeddings, deterministic, recording every request."""

    def __init__(self, api_key: str | None = "test-key", *, dimension: int = 64) -> None:
        super().__init__(api_key)
        self.dimension = dimension
        self._replies: list[str] = []
        self._reply_fn: ReplyFn | None = None
        self.route("POST", "/v1/chat/completions", self._chat)
        self.route("POST", "/v1/embeddings", self._embeddings)

    def __enter__(self) -> FakeOpenAI:
        super().__enter__()
        return self

    # -- scripting --------------------------------------------------------------------------------
    def reply(self, *texts: str) -> None:
        """Answer the next chat requests with these texts in turn (the last one repeats)."""
        self._replies = list(texts)
        self._reply_fn = None

    def reply_with(self, fn: ReplyFn) -> None:
        self._reply_fn = fn
        self._replies = []

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.json for r in self.requests_to("/chat/completions")]

    # -- routes -----------------------------------------------------------------------------------
    def unauthorized(self, request: Request) -> Reply:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return Reply(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {given}. You can find your API key at ...",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
        )

    def _next_reply(self, body: dict[str, Any]) -> str:
        if self._reply_fn is not None:
            return self._reply_fn(body)
        if self._replies:
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]
        return default_reply(body)

    def _chat(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json
        if not isinstance(body, dict) or not body.get("messages") or not body.get("model"):
            raise BadRequest("'messages' and 'model' are required")
        for message in body["messages"]:
            if message.get("role") not in ("system", "user", "assistant", "developer", "tool"):
                raise BadRequest(f"invalid role {message.get('role')!r}")
        text = self._next_reply(body)
        created = int(time.time())
        ident = f"chatcmpl-fake{len(self.requests)}"
        if body.get("stream"):
            pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
            base = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
            }
            events: list[dict[str, Any]] = [
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                    ],
                }
            ]
            events += [
                {**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                for p in pieces
            ]
            events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            return Reply(200, stream=sse(events))
        return Reply(
            200,
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10},
            },
        )

    def _embeddings(self, request: Request, _: dict[str, str]) -> Reply:
        body = request.json
        if not isinstance(body, dict) or "input" not in body or not body.get("model"):
            raise BadRequest("'input' and 'model' are required")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not inputs or len(inputs) > 2048:
            raise BadRequest("input must hold 1..2048 items")
        if any(not isinstance(t, str) or not t for t in inputs):
            raise BadRequest("input cannot contain an empty string")
        dimension = int(body.get("dimensions") or self.dimension)
        data = []
        for i, text in enumerate(inputs):
            vector = hashed_embedding(text, dimension)
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )
