"""Slack over HTTP: ``POST /slack/events`` for events, slash commands and interactivity.

bolt verifies the signature (``v0=`` HMAC of ``v0:{timestamp}:{body}``) and rejects
timestamps older than 5 minutes with 401. ``App.dispatch`` is synchronous and waits for the
listener's ``ack()``, so it runs in a worker thread: the event loop keeps serving other
requests while one is being acknowledged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from slack_bolt import BoltRequest
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from adapters.factory import Services
    from adapters.slack.app import SlackBot

log = logging.getLogger(__name__)


def slack_router(services: Services, bot: SlackBot | None = None) -> APIRouter:
    """A router serving ``POST /slack/events`` with the Slack app for ``services`` (or ``bot``)."""
    slack = bot or services.slack_bot()
    router = APIRouter()

    @router.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        try:
            body = (await request.body()).decode("utf-8")
            bolt_request = BoltRequest(
                body=body,
                query=str(request.query_params),
                headers={k: [v] for k, v in request.headers.items()},
            )
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # bolt parses the body before checking the signature and assumes a JSON object or a
            # form: anything else (``null``, a list, bad UTF-8) is the sender's error, not ours.
            log.warning("Slack: unreadable request body (%s)", type(exc).__name__)
            return Response(status_code=400)
        try:
            result = await run_in_threadpool(slack.app.dispatch, bolt_request)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # Listener errors never get here (bolt hands them to @app.error); these come from
            # bolt's own middleware reading a signed payload of an unexpected shape.
            log.warning("Slack: malformed payload (%s)", type(exc).__name__)
            return Response(status_code=400)
        if result.status == 500:
            # bolt answers 500 when its middleware or a matcher fails on a signed payload of an
            # unexpected shape (after reporting it to @app.error). Our listeners acknowledge
            # first, so this is the sender's malformed request: 400, which Slack does not retry.
            return Response(status_code=400)
        return Response(
            status_code=result.status,
            content=result.body,
            headers=result.first_headers_without_set_cookie(),
        )

    return router
