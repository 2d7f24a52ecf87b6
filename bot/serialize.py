"""Answers to and from JSON-safe dicts (for stores, the CLI's --json and the web API)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.types import Answer, Citation, Decision, Platform, Question, Trace, TracePassage, Turn


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: Any) -> datetime | None:
    return None if not value else datetime.fromisoformat(str(value))


def question_to_dict(q: Question) -> dict[str, Any]:
    return {
        "text": q.text,
        "asker": q.asker,
        "platform": q.platform.value,
        "conversation": q.conversation,
        "thread": q.thread,
        "history": [{"speaker": t.speaker, "text": t.text} for t in q.history],
        "groups": sorted(q.groups),
    }


def question_from_dict(d: Mapping[str, Any]) -> Question:
    return Question(
        text=d["text"],
        asker=d.get("asker", "anonymous"),
        platform=Platform(d.get("platform", "cli")),
        conversation=d.get("conversation", ""),
        thread=d.get("thread", ""),
        history=tuple(Turn(t["speaker"], t["text"]) for t in d.get("history", ())),
        groups=frozenset(d.get("groups", ("public",))),
    )


def citation_to_dict(c: Citation) -> dict[str, Any]:
    return {
        "number": c.number,
        "chunk_id": c.chunk_id,
        "doc_id": c.doc_id,
        "title": c.title,
        "heading_path": list(c.heading_path),
        "url": c.url,
        "updated_at": _dt(c.updated_at),
        "snippet": c.snippet,
    }


def citation_from_dict(d: Mapping[str, Any]) -> Citation:
    return Citation(
        d["number"], d["chunk_id"], d["doc_id"], d["title"], tuple(d["heading_path"]), d["url"],
        _parse_dt(d.get("updated_at")), d.get("snippet", ""),
    )


def _tp(p: TracePassage) -> dict[str, Any]:
    return {"chunk_id": p.chunk_id, "doc_id": p.doc_id, "title": p.title, "scores": dict(p.scores),
            "access": list(p.access)}


def _tp_from(d: Mapping[str, Any]) -> TracePassage:
    return TracePassage(d["chunk_id"], d["doc_id"], d["title"], d["scores"], tuple(d.get("access", ("public",))))


def trace_to_dict(t: Trace) -> dict[str, Any]:
    return {
        "query": t.query,
        "retrieved": [_tp(p) for p in t.retrieved],
        "reranked": [_tp(p) for p in t.reranked],
        "embedder": t.embedder,
        "reranker": t.reranker,
        "generator": t.generator,
        "prompt_version": t.prompt_version,
        "timings_ms": {k: round(v, 2) for k, v in t.timings_ms.items()},
    }


def trace_from_dict(d: Mapping[str, Any]) -> Trace:
    return Trace(
        d["query"], tuple(_tp_from(p) for p in d["retrieved"]), tuple(_tp_from(p) for p in d["reranked"]),
        d["embedder"], d["reranker"], d["generator"], d["prompt_version"], d["timings_ms"],
    )


def answer_to_dict(a: Answer) -> dict[str, Any]:
    return {
        "id": a.id,
        "question": question_to_dict(a.question),
        "text": a.text,
        "decision": a.decision.value,
        "confidence": a.confidence,
        "citations": [citation_to_dict(c) for c in a.citations],
        "trace": None if a.trace is None else trace_to_dict(a.trace),
        "created_at": _dt(a.created_at),
        "note": a.note,
        "see_also": [citation_to_dict(c) for c in a.see_also],
    }


def answer_from_dict(d: Mapping[str, Any]) -> Answer:
    return Answer(
        id=d["id"],
        question=question_from_dict(d["question"]),
        text=d["text"],
        decision=Decision(d["decision"]),
        confidence=d["confidence"],
        citations=tuple(citation_from_dict(c) for c in d["citations"]),
        trace=None if d.get("trace") is None else trace_from_dict(d["trace"]),
        created_at=_parse_dt(d.get("created_at")),
        note=d.get("note", ""),
        see_also=tuple(citation_from_dict(c) for c in d.get("see_also", ())),
    )
