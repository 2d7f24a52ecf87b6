"""End-to-end check on real third-party documentation: Git's own docs (Debian's ``git-doc``).

Ingests ``/usr/share/doc/git/html`` (about 200 man pages and guides, each as AsciiDoc ``.txt``
source *and* rendered ``.html``: every page is there twice) through the composition root, the
way ``supportbot ingest`` does, then asks ``bench/gitdocs/questions.jsonl``: 20 helpdesk
questions whose right answer needs a specific command or setting, and 5 about other products
that the Git docs do not cover. An answerable question counts as answered right when the reply
is not declined and contains one of its ``expect`` strings (the command or setting); an
unanswerable one should be declined. Also counted: replies citing the same page twice (its
``.txt`` and ``.html``) and replies cutting a code block.

    apt-get install git-doc
    .venv/bin/python bench/gitdocs.py [--docs /usr/share/doc/git/html] [--answers-out FILE] [--json]

Writes bench/results/gitdocs.json. The questions were written for this check (not taken from
any evaluation set); nothing was tuned on them but the reading of answers described in
docs/answers.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.factory import build  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from bot.types import Decision, Question  # noqa: E402

QUESTIONS = ROOT / "bench" / "gitdocs" / "questions.jsonl"


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run(docs: Path, data: Path, answers_out: Path | None) -> dict[str, Any]:
    from adapters.cli.ingest import run_ingest

    settings = Settings(data_dir=data)  # type: ignore[call-arg]
    services = build(settings)
    t0 = time.perf_counter()
    run_ingest(services, [str(docs)], "git", ("public",), False)
    log(f"ingested {docs} in {time.perf_counter() - t0:.0f}s: {services.index.count()} chunks")
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows = []
    for q in questions:
        answer = services.answers.answer(Question(q["text"], asker="bench"))
        answered = answer.decision == Decision.ANSWERED
        pages = [c.url.rsplit("/", 1)[-1].rsplit(".", 1)[0] for c in (*answer.citations, *answer.see_also)]
        rows.append(
            {
                "id": q["id"],
                "question": q["text"],
                "answerable": bool(q["expect"]),
                "decision": answer.decision.value,
                "right": (answered and any(e in answer.text for e in q["expect"]))
                if q["expect"]
                else not answered,
                "twice": len(pages) != len(set(pages)),
                "broken_code": answer.text.count("```") % 2 == 1,
                "words": len(answer.text.split()),
                "confidence": answer.confidence,
                "text": answer.text,
                "citations": [c.doc_id for c in answer.citations],
                "see_also": [c.doc_id for c in answer.see_also],
            }
        )
    if answers_out is not None:
        answers_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answerable = [r for r in rows if r["answerable"]]
    other = [r for r in rows if not r["answerable"]]
    return {
        "answerable": len(answerable),
        "unanswerable": len(other),
        "answered_with_the_command": round(sum(r["right"] for r in answerable) / len(answerable), 3),
        "declined_rate": round(sum(r["right"] for r in other) / len(other), 3) if other else 0.0,
        "cited_a_page_twice": sum(r["twice"] for r in rows),
        "broken_code_blocks": sum(r["broken_code"] for r in rows),
        "median_words": statistics.median(r["words"] for r in rows if r["decision"] == "answered"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/git/html"))
    parser.add_argument("--data", type=Path, default=None, help="index directory (default: a temporary one)")
    parser.add_argument("--answers-out", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    if not args.docs.is_dir():
        log(f"error: {args.docs} not found (apt-get install git-doc)")
        raise SystemExit(2)
    with tempfile.TemporaryDirectory(prefix="supportbot-gitdocs-") as tmp:
        results = run(args.docs, args.data or Path(tmp), args.answers_out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gitdocs.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
    else:
        log("  ".join(f"{k}={v}" for k, v in results.items()))


if __name__ == "__main__":
    main()
