"""``POST /api/messages``: the Teams (Bot Framework) endpoint, as a FastAPI router.

Translation only, like bolt's framework adapters: read the body and the Authorization
header, authenticate through the gateway, run the turn, write the status. Invoke
activities (votes, card actions) are answered inside the request because Teams shows their
reply; everything else is acknowledged with 201 at once and handled in a background task,
so a slow answer never holds the channel's HTTP request (Teams gives up after 15 s).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from adapters.factory import Services
from adapters.teams.exposure import startup_line
from adapters.teams.handler import TeamsBot
from adapters.teams.protocol import (
    ChannelGateway,
    ChannelUnavailable,
    MalformedActivity,
    Unauthorized,
    UnendorsedServiceUrl,
)

log = logging.getLogger(__name__)


def teams_router(
    services: Services, *, gateway: ChannelGateway | None = None, bot: TeamsBot | None = None
) -> APIRouter:
    """The router serving ``POST /api/messages``; ``gateway`` and ``bot`` are injectable for tests.

    Whether to mount it at all is the caller's decision (``adapters.teams.exposure.teams_mode``:
    the web app mounts it only with an app id or the explicit local-testing opt-in).
    """
    gateway = gateway or services.teams_gateway
    bot = bot or services.teams_bot(gateway)
    if gateway.auth_enabled:
        log.info(startup_line("authenticated", services.settings.microsoft_app_id))
    else:
        log.info(startup_line("local"))
    router = APIRouter()

    @router.post("/api/messages", include_in_schema=False)
    async def messages(request: Request) -> Response:
        if "application/json" not in request.headers.get("content-type", ""):
            return Response(status_code=415)
        try:
            activity: Any = json.loads(await request.body())
        except ValueError:
            return Response(status_code=400)
        if not isinstance(activity, dict) or not isinstance(activity.get("type"), str):
            return Response(status_code=400)
        if missing := _missing_parties(activity):
            # Nothing can be replied to (or attributed) without these: refuse before any turn runs.
            log.warning("Teams: refused an activity without %s", missing)
            return Response(status_code=400)
        try:
            auth = await gateway.authenticate(request.headers.get("authorization"), activity)
        except UnendorsedServiceUrl as exc:
            log.warning("Teams: refused an activity without posting anything: %s", exc)
            return Response(status_code=403)
        except Unauthorized as exc:
            log.warning("Teams: rejected a request: %s", exc)
            return Response(status_code=401)
        except MalformedActivity as exc:
            log.warning("Teams: %s", exc)
            return Response(status_code=400)
        except ChannelUnavailable as exc:
            log.error("Teams: %s", exc)
            return Response(status_code=503)
        if activity["type"] == "invoke":
            reply = await gateway.run(auth, activity, bot.on_turn)
            if reply is None:
                return Response(status_code=200)
            if reply.body is None:
                return Response(status_code=reply.status)
            return JSONResponse(dict(reply.body), status_code=reply.status)
        bot.spawn(gateway.run(auth, activity, bot.on_turn), name=f"teams {activity['type']} turn")
        return Response(status_code=201)

    return router


def _missing_parties(activity: dict[str, Any]) -> str:
    """The first of ``conversation``, ``from`` and ``recipient`` that is not an object with a string
    ``id`` (every Bot Framework channel sends all three), or ""."""
    for key in ("conversation", "from", "recipient"):
        party = activity.get(key)
        if not isinstance(party, dict) or not isinstance(party.get("id"), str) or not party["id"]:
            return f"{key}.id"
    return ""
