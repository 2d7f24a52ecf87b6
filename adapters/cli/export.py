"""``export finetune``: what the team taught the bot, as fine-tuning data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from adapters.cli.common import err, fail, failing, services

export_app = typer.Typer(no_args_is_help=True, help="Export what the team taught the bot.")


@export_app.command("finetune")
def export_finetune(
    file: Annotated[Path, typer.Argument(help="The JSONL file to write (- for stdout)")],
    format: Annotated[str, typer.Option("--format", help="Only `openai` (chat fine-tuning JSONL)")] = "openai",  # noqa: A002
    groups: Annotated[
        str, typer.Option("--groups", help="Access groups the fine-tuned model may learn from, comma-separated")
    ] = "public",
) -> None:
    """Verified answers and 👍-rated answers (question, cited passages, answer) as OpenAI chat
    fine-tuning JSONL, only those whose access groups are all within --groups."""
    from bot.verified import finetune_examples

    if format != "openai":
        fail(f"unknown --format {format!r}; the only format is `openai`")
    allowed = frozenset(g.strip() for g in groups.split(",") if g.strip())
    if not allowed:
        fail("--groups needs at least one access group, e.g. --groups public")
    built = services()
    with failing(code=1):
        store = built.verified_store
        records = list(finetune_examples(store.records(with_uses=False), store.upvoted(), allowed))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if str(file) == "-":
        sys.stdout.write(lines)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(lines, encoding="utf-8")
        err.print(f"wrote {len(records)} examples to {file} (access groups: {', '.join(sorted(allowed))})")
    if len(records) < 10:
        err.print("note: OpenAI fine-tuning needs at least 10 examples")
