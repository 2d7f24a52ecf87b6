"""The admin API for verified answers (issue 17), behind the admin session like the rest of /api/admin.

``GET /api/admin/verified`` lists them (who, when, how often cited, review date, status);
``PATCH /api/admin/verified/{id}`` edits the text, the question or the review date;
``POST /api/admin/verified/{id}/expire`` sets the review date to now (no longer cited);
``DELETE /api/admin/verified/{id}`` removes it from the index. Changes need the CSRF token.
The logic is the core's (``bot.verified.VerifiedService``); this only translates HTTP.

(No ``from __future__ import annotations`` here: FastAPI must resolve the local ``admin``
dependency aliases at definition time.)
"""


from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from adapters.factory import Services
from adapters.web.auth import Session, WebAuth
from bot.errors import SupportbotError
from bot.verified import VerifiedAnswer


class VerifiedEdit(BaseModel):
    """Fields to change; absent ones stay. ``review_by`` null: never expires."""

    text: str | None = Field(default=None, min_length=1, max_length=20_000)
    question: str | None = Field(default=None, min_length=1, max_length=2_000)
    review_by: datetime | None = None
    clear_review: bool = False


def verified_dict(v: VerifiedAnswer, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "id": v.id,
        "doc_id": v.doc_id,
        "question": v.question,
        "paraphrases": list(v.paraphrases),
        "text": v.text,
        "author": v.author,
        "author_name": v.author_name,
        "platform": v.platform.value,
        "conversation": v.conversation,
        "url": v.url,
        "groups": sorted(v.groups),
        "created_at": v.created_at.isoformat(),
        "updated_at": None if v.updated_at is None else v.updated_at.isoformat(),
        "review_by": None if v.review_by is None else v.review_by.isoformat(),
        "status": "removed" if v.removed else "active" if v.active(now) else "expired",
        "uses": v.uses,
    }


def verified_router(services: Services, auth: WebAuth) -> APIRouter:
    router = APIRouter()
    admin = Annotated[Session, Depends(auth.require_admin)]
    admin_change = Annotated[Session, Depends(auth.require_admin_csrf)]

    @router.get("/api/admin/verified")
    def list_verified(_: admin) -> dict[str, Any]:
        try:
            items = services.verified.records()
        except SupportbotError as exc:
            raise HTTPException(503, f"verified answers unavailable: {exc}") from None
        return {"verified": [verified_dict(v) for v in items]}

    @router.patch("/api/admin/verified/{verified_id}")
    def edit_verified(_: admin_change, verified_id: str, body: VerifiedEdit) -> dict[str, Any]:
        review: datetime | None | str = "keep"
        if body.clear_review:
            review = None
        elif body.review_by is not None:
            review = body.review_by if body.review_by.tzinfo else body.review_by.replace(tzinfo=UTC)
        try:
            changed = services.verified.edit(verified_id, text=body.text, question=body.question, review_by=review)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if changed is None:
            raise HTTPException(404, "no such verified answer")
        return {"ok": True, "verified": verified_dict(changed)}

    @router.post("/api/admin/verified/{verified_id}/expire")
    def expire_verified(_: admin_change, verified_id: str) -> dict[str, Any]:
        changed = services.verified.expire(verified_id)
        if changed is None:
            raise HTTPException(404, "no such verified answer")
        return {"ok": True, "verified": verified_dict(changed)}

    @router.delete("/api/admin/verified/{verified_id}")
    def remove_verified(_: admin_change, verified_id: str) -> dict[str, Any]:
        if not services.verified.remove(verified_id):
            raise HTTPException(404, "no such verified answer")
        return {"ok": True}

    return router
