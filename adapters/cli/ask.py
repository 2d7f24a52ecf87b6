"""``ask``, ``chat`` and ``search``: questions from the command line.

Each builds the services through :func:`~adapters.cli.common.question_services`, which starts
loading the embedding model on a thread before the rest is imported and opened.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from adapters.cli.common import out, question_services

if TYPE_CHECKING:
    from bot.types import Answer


def search(
    question: str,
    k: Annotated[int, typer.Option("-k", help="How many passages")] = 5,
    groups: Annotated[str | None, typer.Option(help="Search as a viewer with these access groups")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the best passages for a question, with scores and sources."""
    from bot.types import UNRESTRICTED, SearchFilters

    services = question_services()
    filters = UNRESTRICTED if groups is None else SearchFilters(groups=frozenset(groups.split(",")))
    result = services.retriever.search(question, k, filters)
    if as_json:
        print(json.dumps([
            {"rank": i + 1, "score": round(p.score, 4), "scores": dict(p.scores), "title": p.chunk.title,
             "heading": p.chunk.heading, "url": p.chunk.url, "chunk_id": p.chunk.id, "text": p.chunk.text}
            for i, p in enumerate(result.passages)
        ]))
        return
    if not result.passages:
        out.print("No passages found. Ingest something first: supportbot ingest PATH")
    for i, p in enumerate(result.passages, 1):
        detail = " ".join(f"{k}={v:.3f}" for k, v in p.scores.items())
        where = p.chunk.heading or p.chunk.title
        out.print(f"[bold]{i}. {where}[/bold]  score {p.score:.3f} ({detail})")
        out.print(f"   {p.chunk.url}", style="dim", highlight=False)
        text = p.chunk.text if len(p.chunk.text) < 400 else p.chunk.text[:400] + "…"
        out.print(f"   {text}", highlight=False)


def ask(
    question: str,
    groups: Annotated[str, typer.Option(help="Ask as a viewer with these access groups")] = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole Answer as JSON")] = False,
) -> None:
    """Answer a question from the knowledge base, with numbered sources (or decline)."""
    from bot.types import Question

    services = question_services()
    q = Question(text=question, asker="cli", groups=frozenset(g for g in groups.split(",") if g))
    answer = services.answers.answer(q)
    if as_json:
        from bot.serialize import answer_to_dict

        sys.stdout.write(json.dumps(answer_to_dict(answer)) + "\n")
    else:
        print_answer(answer)


def chat() -> None:
    """An interactive prompt: ask questions, follow-ups carry the conversation's topic."""
    from bot.types import Question, Turn

    services = question_services()
    history: list[Turn] = []
    out.print("Ask a question (empty line or Ctrl-D to quit).", style="dim")
    while True:
        try:
            text = input("? ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        answer = services.answers.answer(Question(text=text, asker="cli", history=tuple(history)))
        print_answer(answer)
        history += [Turn("user", text), Turn("assistant", answer.text)]


def print_answer(answer: Answer) -> None:
    from bot.types import Decision

    style = "green" if answer.decision == Decision.ANSWERED else "yellow"
    out.print(answer.text, style=style, highlight=False)
    if answer.note:
        out.print(f"({answer.note})", style="dim")
    for c in answer.citations:
        where = " > ".join(dict.fromkeys(x for x in (c.title, *c.heading_path) if x)) or c.doc_id
        age = f", updated {c.updated_at:%Y-%m-%d}" if c.updated_at else ""
        out.print(f"  [{c.number}] {where} — {c.url}{age}", highlight=False)
