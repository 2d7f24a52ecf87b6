"""The web chat: a page that works like a Slack thread, and its small JSON API.

- ``GET /``: the chat page (404 with ``web_chat=off``; sign-in first with ``web_chat=login``).
- ``POST /api/ask``: ``{"text", "history", "conversation"}`` → the answer as a dict.
- ``POST /api/ask/stream``: the same as Server-Sent Events: ``delta`` events with text as the
  generator writes it, then one ``answer`` event with the final, checked answer.
- ``POST /api/feedback``: ``{"answer_id", "vote": "up"|"down"}``; one vote per visitor per answer,
  on web answers only, rate limited per visitor and per address (``SUPPORTBOT_RATE_VOTES_*``).
  A visitor's vote moves rankings in the web chat only, unless an admin confirms it in the
  review queue (``bot/feedback.py``).

Questions count against the rate limits (``SUPPORTBOT_RATE_QUESTIONS_*``) per client address
and per visitor; over the limit the API answers 429 with ``Retry-After``.

A visitor asks as a public viewer (groups ``{"public"}``); a signed-in admin asks with every
group the configuration knows of. The answers sent back carry no trace: which passages were
retrieved and how they scored is shown on the admin page only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from adapters.factory import Services
from adapters.web.auth import WebAuth
from adapters.web.pages import render
from bot.errors import ProviderRejected, RateLimited, SupportbotError
from bot.feedback import WEB_ADMIN_VOTER
from bot.links import honest_markdown, safe_link
from bot.ratelimit import polite_text
from bot.serialize import answer_to_dict
from bot.types import PUBLIC, Answer, Feedback, Platform, Question, Turn, Vote

log = logging.getLogger(__name__)

MAX_TURNS = 20


class TurnIn(BaseModel):
    """One earlier turn of the page's conversation."""

    speaker: Literal["user", "assistant"]
    text: str = Field(max_length=8000)


class AskIn(BaseModel):
    """A question from the chat page."""

    text: str = Field(min_length=1, max_length=2000)
    history: list[TurnIn] = Field(default_factory=list, max_length=200)
    conversation: str = Field(default="", max_length=64)


class FeedbackIn(BaseModel):
    """A vote from the chat page."""

    answer_id: str = Field(min_length=1, max_length=64)
    vote: Literal["up", "down"]
    comment: str = Field(default="", max_length=2000)


def admin_groups(services: Services) -> frozenset[str]:
    """Every access group the configuration names (what a signed-in admin asks with)."""
    s = services.settings
    groups = {PUBLIC, *s.default_access}
    for mapping in (s.access_channel_groups, s.access_user_groups):
        for values in mapping.values():
            groups.update(values)
    try:
        for source in services.source_store.list():
            groups.update(source.access)
    except Exception:  # noqa: BLE001 - no sources table yet: the configured groups are all there is
        log.debug("no sources to take access groups from", exc_info=True)
    return frozenset(groups)


def public_answer(answer: Answer) -> dict[str, Any]:
    """The answer as the chat page gets it: no trace, no access groups, no server paths.

    Links in the text and citation titles are made honest (``bot.links``; the page shows each
    link's host beside it); a citation keeps its URL only when it is an http(s) link, and loses
    its document and chunk ids (a file's path on the server is not the viewer's business).
    """
    data = answer_to_dict(answer)
    data.pop("trace", None)
    data["question"].pop("groups", None)
    data["text"] = honest_markdown(answer.text)
    for c in data["citations"]:
        link = safe_link(c.get("title") or "", c.get("url") or "")
        c["url"] = link.url
        c["title"] = link.text or "untitled"
        c.pop("doc_id", None)
        c.pop("chunk_id", None)
    return data


def _require_json(request: Request) -> None:
    # A cross-site form cannot send application/json without a CORS preflight, which we never allow.
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send application/json")


def chat_router(services: Services, auth: WebAuth) -> APIRouter:
    """The router serving the chat page and its API, per ``settings.web_chat``."""
    mode = services.settings.web_chat
    router = APIRouter()

    def allowed(request: Request) -> bool:
        if mode == "off":
            raise HTTPException(404, "the web chat is switched off (SUPPORTBOT_WEB_CHAT=off)")
        if mode == "login":
            if not auth.enabled:
                raise HTTPException(404, "the web chat needs a sign-in, but no admin password is set")
            return auth.session(request) is not None
        return True

    def question(request: Request, response: Response, body: AskIn) -> Question:
        _require_json(request)
        if not allowed(request):
            raise HTTPException(401, "sign in first")
        admin = auth.session(request) is not None
        visitor = auth.ensure_visitor(request, response)
        # Limits count per client address (a new cookie is free; a new address is not) and per visitor.
        client = request.client.host if request.client else "unknown"
        try:
            services.throttle.question(Platform.WEB.value, f"ip:{client}", visitor)
        except RateLimited as exc:
            retry = str(max(1, math.ceil(exc.retry_after)))
            raise HTTPException(429, polite_text(exc), headers={"Retry-After": retry}) from None
        turns = [Turn(t.speaker, t.text) for t in body.history][-MAX_TURNS:]
        return Question(
            text=body.text.strip(),
            asker=WEB_ADMIN_VOTER if admin else f"web:{visitor}",
            platform=Platform.WEB,
            conversation=body.conversation,
            thread=body.conversation,
            history=tuple(turns),
            groups=admin_groups(services) if admin else frozenset({PUBLIC}),
        )

    @router.get("/", include_in_schema=False)
    def chat_page(request: Request) -> Response:
        if not allowed(request):
            return RedirectResponse("/login?next=/", status_code=303)
        admin = auth.session(request) is not None
        response = render(
            "chat.html",
            config={"admin": admin, "adminPages": auth.enabled},
        )
        auth.ensure_visitor(request, response)
        return response

    @router.post("/api/ask")
    def ask(request: Request, response: Response, body: AskIn) -> dict[str, Any]:
        q = question(request, response, body)
        try:
            answer = services.answers.answer(q)
        except SupportbotError as exc:
            log.warning("web question failed: %s", exc)
            raise HTTPException(503, f"the bot could not answer just now: {exc}") from None
        return public_answer(answer)

    @router.post("/api/ask/stream")
    def ask_stream(request: Request, body: AskIn) -> Response:
        holder = Response()
        q = question(request, holder, body)

        def events() -> Iterator[str]:
            try:
                for item in services.answers.stream(q):
                    if isinstance(item, Answer):
                        yield f"event: answer\ndata: {json.dumps(public_answer(item))}\n\n"
                    else:
                        yield f"event: delta\ndata: {json.dumps(item)}\n\n"
            except SupportbotError as exc:
                log.warning("web question failed: %s", exc)
                yield f"event: error\ndata: {json.dumps(f'the bot could not answer just now: {exc}')}\n\n"

        stream = StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        for key, value in holder.headers.items():
            if key.lower() == "set-cookie":
                stream.headers.append(key, value)
        return stream

    @router.post("/api/feedback")
    def record_feedback(request: Request, response: Response, body: FeedbackIn) -> dict[str, Any]:
        _require_json(request)
        if not allowed(request):
            raise HTTPException(401, "sign in first")
        visitor = auth.ensure_visitor(request, response)
        admin = auth.session(request) is not None
        # Votes count per visitor and per client address (a new cookie is free; a new address is not).
        client = request.client.host if request.client else "unknown"
        try:
            services.throttle.vote(Platform.WEB.value, visitor, f"ip:{client}")
        except RateLimited as exc:
            retry = str(max(1, math.ceil(exc.retry_after)))
            raise HTTPException(429, polite_text(exc, "votes"), headers={"Retry-After": retry}) from None
        answer = services.answers.get_answer(body.answer_id)
        # A web visitor votes on web answers only (an answer id seen elsewhere is not a ballot).
        if answer is None or answer.question.platform != Platform.WEB:
            raise HTTPException(404, "no such answer")
        voter = WEB_ADMIN_VOTER if admin else f"web:{visitor}"
        try:
            services.answers.record_feedback(
                Feedback(body.answer_id, voter, Platform.WEB, Vote(body.vote), body.comment)
            )
        except ProviderRejected:
            raise HTTPException(404, "no such answer") from None
        except SupportbotError as exc:
            raise HTTPException(503, f"could not record the vote: {exc}") from None
        return {"ok": True, "answer_id": body.answer_id, "vote": body.vote}

    return router
