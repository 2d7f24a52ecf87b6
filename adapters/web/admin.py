"""The admin page, the login page and the admin JSON API (all behind the admin password).

Pages: ``GET /login`` (says so when no admin password is configured), ``POST /login``,
``POST /logout``, ``GET /admin``. API under ``/api/admin/``: ``summary`` (per-day counts),
``sources`` and ``sources/{name}/sync``, ``gaps``, ``worst``, ``queue``, ``search``,
``reviews``, ``votes/{answer_id}/confirm`` (web visitors' votes count beyond the web chat
once confirmed) and ``export.zip``; the Knowledge tab's ``documents`` (list and search),
``documents/chunks`` (one document as the bot sees it), ``DELETE documents`` and
``PUT uploads/{name}`` (a file queued to the workers; its own size limit, SUPPORTBOT_MAX_FILE_MB,
not the global body limit). Reads need the session cookie; changes also need the CSRF
token (``X-CSRF-Token``). Traces and exports come from the stored answers; the index search
here is unrestricted, which is why it is admin-only.
"""

import logging
import os
import re
import threading
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from adapters.factory import Services
from adapters.providers.review_store import (
    RatedAnswer,
    Review,
    ReviewedPassage,
    SqlReviewStore,
    beir_zip,
)
from adapters.web.auth import Session, WebAuth
from adapters.web.insights import group_questions
from adapters.web.pages import render
from bot.errors import ProviderRejected, SupportbotError
from bot.serialize import answer_to_dict
from bot.types import UNRESTRICTED

log = logging.getLogger(__name__)


class PassageIn(BaseModel):
    """A passage marked as one that should have been found (as the admin search showed it)."""

    chunk_id: str = Field(min_length=1, max_length=1024)
    doc_id: str = Field(default="", max_length=1024)
    title: str = Field(default="", max_length=2000)
    text: str = Field(min_length=1, max_length=50_000)


class ReviewIn(BaseModel):
    """A reviewer's verdict on one queue item."""

    answer_id: str = Field(min_length=1, max_length=64)
    verdict: Literal["passages", "unanswerable"]
    passages: list[PassageIn] = Field(default_factory=list, max_length=50)


def _safe_next(value: str) -> str:
    # Only local paths: never redirect to another site after signing in.
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/admin"


def _rated(item: RatedAnswer) -> dict[str, Any]:
    return {
        "answer": answer_to_dict(item.answer),
        "up": item.up,
        "down": item.down,
        "review": None if item.review is None else _review(item.review),
        "web_votes": item.web_votes,
        "votes_confirmed": item.votes_confirmed,
    }


def _review(review: Review) -> dict[str, Any]:
    return {
        "verdict": review.verdict,
        "passages": [asdict(p) for p in review.passages],
        "reviewer": review.reviewer,
        "reviewed_at": None if review.reviewed_at is None else review.reviewed_at.isoformat(),
    }


def admin_router(services: Services, auth: WebAuth, reviews: SqlReviewStore) -> APIRouter:
    """The router serving the login and admin pages and the admin API."""
    router = APIRouter()
    admin = Annotated[Session, Depends(auth.require_admin)]
    admin_change = Annotated[Session, Depends(auth.require_admin_csrf)]
    jobs: dict[str, str] = {}  # source id -> the last sync job started from this page
    jobs_lock = threading.Lock()

    # --- login -----------------------------------------------------------------------------------
    no_admin = (
        "There are no admin pages: no admin password is configured. "
        "Set SUPPORTBOT_ADMIN_PASSWORD (and SUPPORTBOT_SESSION_SECRET to keep sessions across restarts) "
        "and restart the server."
    )

    def disabled_page(next: str = "/admin") -> Response:
        """An HTML page (not JSON: a person opened it in a browser) naming the setting that turns it on."""
        return render(
            "login.html",
            config={"enabled": False},
            next=_safe_next(next),
            notice=no_admin,
            error="",
            disabled="disabled",
            status_code=404,
        )

    @router.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/admin", error: str = "") -> Response:
        if not auth.enabled:
            return disabled_page(next)
        if auth.session(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(
            "login.html", config={"enabled": True}, next=_safe_next(next), notice="", error=error, disabled=""
        )

    @router.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not auth.enabled:
            raise HTTPException(404, "no admin pages: SUPPORTBOT_ADMIN_PASSWORD is not set")
        client = request.client.host if request.client else "unknown"
        if auth.throttle.blocked(client):
            return render(
                "login.html",
                config={"enabled": True},
                next="/admin",
                notice="",
                error="Too many failed attempts; wait a few minutes.",
                disabled="",
                status_code=429,
            )
        raw = (await request.body())[:10_000].decode("utf-8", "replace")
        form = parse_qs(raw, keep_blank_values=True)
        password = (form.get("password") or [""])[0]
        target = _safe_next((form.get("next") or ["/admin"])[0])
        if not auth.check_password(password):
            auth.throttle.failed(client)
            log.warning("failed admin sign-in from %s", client)
            return render(
                "login.html",
                config={"enabled": True},
                next=target,
                notice="",
                error="Wrong password.",
                disabled="",
                status_code=401,
            )
        response = RedirectResponse(target, status_code=303)
        auth.start_session(request, response)
        return response

    @router.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        auth.end_session(request, response)  # revoked on the server, not just forgotten by the browser
        return response

    # --- the page --------------------------------------------------------------------------------
    @router.get("/admin", include_in_schema=False)
    def admin_page(request: Request) -> Response:
        if not auth.enabled:
            return disabled_page()
        session = auth.session(request)
        if session is None:
            return RedirectResponse("/login?next=/admin", status_code=303)
        return render(
            "admin.html", config={"csrf": session.csrf, "chat": services.settings.web_chat != "off"}
        )

    # --- API: reads ------------------------------------------------------------------------------
    @router.get("/api/admin/summary")
    def summary(_: admin, days: Annotated[int, Query(ge=1, le=365)] = 30) -> dict[str, Any]:
        rows = reviews.daily_counts(days)
        totals = {k: sum(getattr(r, k) for r in rows) for k in ("answered", "declined", "up", "down")}
        return {
            "days": [
                {
                    "day": r.day.isoformat(),
                    "answered": r.answered,
                    "declined": r.declined,
                    "up": r.up,
                    "down": r.down,
                }
                for r in rows
            ],
            "totals": totals,
        }

    @router.get("/api/admin/gaps")
    def gaps(_: admin, limit: Annotated[int, Query(ge=1, le=2000)] = 500) -> dict[str, Any]:
        declined = reviews.declined_questions(limit)
        try:
            groups = group_questions(declined, services.embedder)
        except SupportbotError as exc:
            raise HTTPException(503, f"could not embed the questions: {exc}") from None
        return {
            "declined": len(declined),
            "gaps": [
                {
                    "question": g.question,
                    "count": g.count,
                    "examples": g.examples,
                    "answer_ids": g.answer_ids[:50],
                    "last_asked": None if g.last_asked is None else g.last_asked.isoformat(),
                }
                for g in groups
            ],
        }

    @router.get("/api/admin/worst")
    def worst(_: admin, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
        return {"answers": [_rated(r) for r in reviews.worst_rated(limit)]}

    @router.get("/api/admin/queue")
    def queue(
        _: admin, reviewed: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> dict[str, Any]:
        return {"items": [_rated(r) for r in reviews.review_queue(limit, reviewed=reviewed)]}

    @router.get("/api/admin/search")
    def search(
        _: admin,
        q: Annotated[str, Query(min_length=1, max_length=500)],
        k: Annotated[int, Query(ge=1, le=50)] = 10,
    ) -> dict[str, Any]:
        try:
            hits = services.retriever.search(q, k, UNRESTRICTED).passages
        except SupportbotError as exc:
            raise HTTPException(503, f"search failed: {exc}") from None
        return {
            "passages": [
                {
                    "chunk_id": h.chunk.id,
                    "doc_id": h.chunk.doc_id,
                    "title": h.chunk.title,
                    "heading_path": list(h.chunk.heading_path),
                    "text": h.chunk.text,
                    "url": h.chunk.url,
                    "access": list(h.chunk.access),
                    "score": round(h.score, 4),
                }
                for h in hits
            ]
        }

    @router.get("/api/admin/export.zip")
    def export(_: admin) -> Response:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
        return Response(
            beir_zip(reviews.golden_set()),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="supportbot-golden-{stamp}.zip"'},
        )

    @router.get("/api/admin/sources")
    def sources(_: admin) -> dict[str, Any]:
        try:
            rows = services.source_store.list()
        except SupportbotError as exc:
            raise HTTPException(503, f"sources unavailable: {exc}") from None
        out = []
        for s in rows:
            job: dict[str, Any] | None = None
            with jobs_lock:
                job_id = jobs.get(s.id)
            if job_id is not None:
                try:
                    status = services.ingest_queue.status(job_id)
                    job = asdict(status)
                except SupportbotError as exc:
                    job = {"id": job_id, "state": "unknown", "error": str(exc)}
            out.append(
                {
                    "id": s.id,
                    "name": s.name,
                    "kind": s.kind,
                    "status": s.status,
                    "documents": s.documents,
                    "interval_s": s.interval_s,
                    "last_sync_at": None if s.last_sync_at is None else s.last_sync_at.isoformat(),
                    "next_due_at": None if s.next_due_at is None else s.next_due_at.isoformat(),
                    "last_summary": s.last_summary,
                    "last_error": s.last_error,
                    "job": job,
                }
            )
        return {"sources": out, "queue": services.settings.redis_url is not None}

    # --- API: changes ----------------------------------------------------------------------------
    @router.post("/api/admin/sources/{name}/sync", status_code=202)
    def sync_now(_: admin_change, name: str) -> dict[str, Any]:
        source = services.source_store.get(name)
        if source is None:
            raise HTTPException(404, f"no source named {name!r}")
        try:
            job_id = services.ingest_queue.enqueue_sync(source.name, requested_by="web:admin")
        except SupportbotError as exc:
            raise HTTPException(503, f"could not queue the sync: {exc}") from None
        with jobs_lock:
            jobs[source.id] = job_id
        return {"job_id": job_id, "source": source.name}

    @router.post("/api/admin/reviews")
    def save_review(_: admin_change, body: ReviewIn) -> dict[str, Any]:
        review = Review(
            answer_id=body.answer_id,
            verdict=body.verdict,
            passages=tuple(ReviewedPassage(p.chunk_id, p.doc_id, p.title, p.text) for p in body.passages),
            reviewer="admin",
        )
        try:
            reviews.save_review(review)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except ProviderRejected:
            raise HTTPException(404, "no such answer") from None
        stored = reviews.get_review(body.answer_id)
        assert stored is not None
        return {"ok": True, "review": _review(stored)}

    @router.post("/api/admin/votes/{answer_id}/confirm")
    def confirm_votes(_: admin_change, answer_id: str) -> dict[str, Any]:
        # Anonymous web votes count only in the web chat until an admin confirms them here.
        try:
            reviews.confirm_votes(answer_id)
        except ProviderRejected:
            raise HTTPException(404, "no such answer") from None
        return {"ok": True, "answer_id": answer_id, "votes_confirmed": True}

    @router.delete("/api/admin/votes/{answer_id}/confirm")
    def unconfirm_votes(_: admin_change, answer_id: str) -> dict[str, Any]:
        reviews.unconfirm_votes(answer_id)
        return {"ok": True, "answer_id": answer_id, "votes_confirmed": False}

    @router.delete("/api/admin/reviews/{answer_id}")
    def delete_review(_: admin_change, answer_id: str) -> dict[str, Any]:
        reviews.delete_review(answer_id)
        return {"ok": True}

    # --- the Knowledge tab -------------------------------------------------------------------------
    from adapters.providers.catalog import DocumentSummary

    catalog = services.catalog
    uploads: dict[str, str] = {}  # job id -> file name, the uploads started from this page
    max_bytes = int(services.settings.max_file_mb * 1024 * 1024)

    def _doc(d: DocumentSummary) -> dict[str, Any]:
        return {
            "doc_id": d.doc_id,
            "title": d.title,
            "source": d.source,
            "access": list(d.access),
            "url": d.url,
            "updated_at": None if d.updated_at is None else d.updated_at.isoformat(),
            "chunks": d.chunks,
            "last_ingest": None if d.last_ingest is None else d.last_ingest.isoformat(),
        }

    @router.get("/api/admin/documents")
    def documents(
        _: admin,
        q: Annotated[str, Query(max_length=500)] = "",
        source: Annotated[str, Query(max_length=512)] = "",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        try:
            everything = catalog.documents()
            found = catalog.search(q, source)
        except SupportbotError as exc:
            raise HTTPException(503, f"documents unavailable: {exc}") from None
        return {
            "total": len(found),
            "all": len(everything),
            "chunks": sum(d.chunks for d in everything),
            "sources": sorted({d.source for d in everything}),
            "documents": [_doc(d) for d in found[offset : offset + limit]],
        }

    @router.get("/api/admin/documents/chunks")
    def document_chunks(_: admin, doc_id: Annotated[str, Query(min_length=1, max_length=2048)]) -> dict[str, Any]:
        from knowledge.pipeline import embedding_text

        found = catalog.chunks(doc_id)
        if found is None:
            raise HTTPException(404, "no such document (removed, or never ingested)")
        summary, chunks = found
        return {
            "document": _doc(summary),
            "chunks": [
                {
                    "id": c.id,
                    "ordinal": c.ordinal,
                    "heading_path": list(c.heading_path),
                    "text": c.text,
                    "embedded": embedding_text(c),  # what the embedder and keyword search see
                    "access": list(c.access),
                }
                for c in chunks
            ],
        }

    @router.delete("/api/admin/documents")
    def remove_document(_: admin_change, doc_id: Annotated[str, Query(min_length=1, max_length=2048)]) -> dict[str, Any]:
        found = catalog.chunks(doc_id)
        if found is None:
            raise HTTPException(404, "no such document (removed, or never ingested)")
        summary, _chunks = found
        ingestor = services.ingestor
        run_id = uuid.uuid4().hex
        try:  # one run: `supportbot rollback` brings it back
            ingestor.store.start_run(run_id, summary.source)
            ingestor.remove(doc_id, summary.source, run_id)
            ingestor.store.finish_run(run_id, f"removed {doc_id} from the admin page")
        except SupportbotError as exc:
            raise HTTPException(503, f"could not remove the document: {exc}") from None
        log.info("admin removed document %s (run %s)", doc_id, run_id)
        return {"ok": True, "doc_id": doc_id, "run_id": run_id}

    @router.put("/api/admin/uploads/{name:path}", status_code=202)
    async def upload(_: admin_change, name: str, request: Request) -> dict[str, Any]:
        """One file as the raw request body; the same loaders and size limit as the CLI, read by a worker."""
        from knowledge.loaders import file_kind

        safe = _upload_name(name)
        if not safe:
            raise HTTPException(400, "give the file a name (not hidden, not a lock file)")
        limit_text = f"{services.settings.max_file_mb:g} MB"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise HTTPException(413, f"{safe} is larger than the {limit_text} limit (SUPPORTBOT_MAX_FILE_MB)")
        folder = services.data_dir / UPLOADS
        staging = services.data_dir / f".{UPLOADS}-{uuid.uuid4().hex}"  # the file under its own name, not yet visible
        staging.mkdir(parents=True)
        partial = staging / safe
        target = folder / safe
        size = 0
        try:
            with partial.open("wb") as out:
                async for block in request.stream():
                    size += len(block)
                    if size > max_bytes:
                        raise HTTPException(413, f"{safe} is larger than the {limit_text} limit (SUPPORTBOT_MAX_FILE_MB)")
                    out.write(block)
            if size == 0:
                raise HTTPException(400, f"{safe} is empty")
            if file_kind(partial) is None:  # by its suffix, else by its content, as the CLI decides
                raise HTTPException(415, f"{safe}: unsupported file type (Markdown, HTML, text, PDF, DOCX or JSONL)")
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
            staging.rmdir()
        try:
            job_id = services.ingest_queue.enqueue_ingest(str(target), requested_by="web:admin", notify={})
        except SupportbotError as exc:
            raise HTTPException(503, f"could not queue the upload for the workers: {exc}") from None
        with jobs_lock:
            uploads[job_id] = safe
        return {"job_id": job_id, "name": safe, "bytes": size}

    @router.get("/api/admin/uploads")
    def upload_jobs(_: admin) -> dict[str, Any]:
        with jobs_lock:
            started = list(uploads.items())[-50:]
        out = []
        for job_id, file_name in reversed(started):
            try:
                job: dict[str, Any] = asdict(services.ingest_queue.status(job_id))
            except SupportbotError as exc:
                job = {"id": job_id, "state": "unknown", "error": str(exc)}
            out.append({"name": file_name, "job": job})
        return {"uploads": out, "max_file_mb": services.settings.max_file_mb}

    return router


UPLOADS = "uploads"
"""Uploaded files are kept under <data dir>/uploads (the workers read them there; their source is "uploads")."""


def _upload_name(name: str) -> str:
    """The file's own name, made safe to store: no folders, no hidden or lock files, no odd characters."""
    base = re.split(r"[\\/]", name)[-1].strip()
    base = re.sub(r"[^\w.\- ]", "_", base)[:200]
    return "" if not base or base.startswith((".", "~$")) or set(base) <= {".", " "} else base
