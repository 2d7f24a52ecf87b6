"""Per-knowledge-base self-calibration, from the corpus alone.

Score levels do not carry from one knowledge base to another (a cosine that means "on
topic" for one corpus is noise in another), so each knowledge base measures its own, with
questions it makes up and questions nobody would ask it:

- pseudo-questions: content words of one sentence of a sampled passage, asked as a
  question (seeded, so a run is deterministic for an index);
- off-topic questions: a general bank shipped with the project
  (``bot/assets/offtopic_questions.txt``: everyday questions, chit-chat, other domains).

From these it sets, in a :class:`DeclinePolicy`:

- ``off_dense`` / ``on_dense``: the median top cosine of the off-topic questions and of
  the pseudo-questions; the answerability model reads a question's cosine relative to them;
- ``threshold``: the answerability model's own threshold (chosen leave-one-set-out),
  raised when needed so that at least ``OFFTOPIC_TARGET`` of a sample of the bank's
  questions are declined on this knowledge base (never by more than ``MAX_RAISE``);
- ``related_dense``: a passage this close is offered as a "closest source" in a decline.

Passages are sampled through the index's own dense search with random seeded directions,
so any ChunkIndex works, from 10 documents to 100,000 chunks (the sample size is fixed).
The result is cached in the data directory (``calibration.json``) with the index size and is
recomputed after an ingest or sync changes it; ``supportbot calibrate`` re-runs it and
prints what it chose and why.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from bot.answerability import AnswerabilityModel, default_model
from bot.answering import AnswerService, DeclinePolicy
from bot.extractive import split_sentences
from bot.retrieval import Retriever
from bot.rewrite import standalone_query
from bot.text import content_words
from bot.types import UNRESTRICTED, Chunk, Question

log = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[Path, tuple[int, DeclinePolicy]] = {}

SEED = 20240611
VERSION = 5  # bump when the procedure changes so cached results are recomputed
BANK_PATH = Path(__file__).parent / "assets" / "offtopic_questions.txt"

# The bank may raise the model's threshold so that this share of its questions is declined
# here, by at most MAX_RAISE. A safety net: held out, the model alone declined >= 0.97 of the
# bank on every set; with 0.95 / 0.25 a 60-question sample once lifted mtrag_clapnq (general
# Wikipedia, where everyday questions are near-topics) from 0.60 to 0.85 and its answered
# rate to 0.66.
OFFTOPIC_TARGET = 0.9
MAX_RAISE = 0.1
TEMPLATES = ("How do I {}?", "What is {}?", "{}", "Can I {}?")


def offtopic_bank(path: Path = BANK_PATH) -> tuple[str, ...]:
    """The shipped bank of off-topic questions (one a line; '#' comments skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


@dataclass(frozen=True)
class Calibration:
    """What a calibration run chose and the evidence behind it."""

    policy: DeclinePolicy
    positives: int
    offtopic: int
    pos_dense_median: float
    off_dense_median: float
    model_threshold: float
    offtopic_p90: float
    offtopic_declined: float
    seconds: float

    def explain(self) -> str:
        """A few lines saying what was chosen and why (printed by ``supportbot calibrate``)."""
        p = self.policy
        raised = (p.threshold or 0.0) > self.model_threshold + 1e-9
        lines = [
            f"off-topic level (off_dense) {p.off_dense:.3f}: median top cosine of {self.offtopic} "
            "off-topic questions from the general bank",
            f"on-topic level (on_dense) {p.on_dense:.3f}: median top cosine of {self.positives} "
            "pseudo-questions made from this knowledge base's passages",
            f"decline threshold {p.threshold:.3f} on the answerability probability: "
            + (
                f"raised from the model's {self.model_threshold:.3f} so that {OFFTOPIC_TARGET:.0%} of "
                f"the off-topic questions are declined here (their {OFFTOPIC_TARGET:.0%} quantile "
                f"{self.offtopic_p90:.3f})"
                if raised
                else f"the model's own (leave-one-set-out) threshold; off-topic questions already "
                f"score below it ({self.offtopic_declined:.0%} declined)"
            ),
            f"closest sources offered in a decline from cosine {p.related_dense:.3f}",
        ]
        return "\n".join(lines)


def _sample_passages(retriever: Retriever, n: int, rng: np.random.Generator) -> list[Chunk]:
    """About ``n`` distinct passages, found by dense search along random directions."""
    dim = retriever.embedder.dimension
    seen: dict[str, Chunk] = {}
    for _ in range(max(4, n // 4)):
        v = rng.standard_normal(dim).astype(np.float32)
        v /= np.linalg.norm(v) or 1.0
        for hit in retriever.index.dense_search(v, 8, UNRESTRICTED):
            seen.setdefault(hit.chunk.id, hit.chunk)
        if len(seen) >= n:
            break
    chunks = sorted(seen.values(), key=lambda c: c.id)
    order = rng.permutation(len(chunks))
    return [chunks[i] for i in order[:n]]


def pseudo_question(chunk: Chunk, rng: np.random.Generator) -> str | None:
    """A question made of up to five content words of one sentence of ``chunk`` (None: no usable sentence)."""
    sentences = [s for s in split_sentences(chunk.text) if 4 <= len(content_words(s)) <= 40]
    if not sentences:
        return None
    terms = list(dict.fromkeys(content_words(sentences[int(rng.integers(len(sentences)))])))
    start = int(rng.integers(max(1, len(terms) - 5)))
    picked = terms[start : start + 5]
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(" ".join(picked))


def _median(values: Sequence[float], default: float) -> float:
    return float(np.median(np.asarray(values))) if values else default


def calibrate_report(
    service: AnswerService,
    *,
    bank: Sequence[str] | None = None,
    samples: int = 40,
    offtopic_samples: int = 100,
    seed: int = SEED,
    model: AnswerabilityModel | None = None,
) -> Calibration:
    """Calibrate the decline policy for the knowledge base behind ``service`` (deterministic for a seed)."""
    started = time.perf_counter()
    retriever = service.retriever
    model = model or service.model
    default = DeclinePolicy()
    rng = np.random.default_rng(seed)
    questions = list(offtopic_bank() if bank is None else bank)
    if len(questions) > offtopic_samples:
        picked = sorted(rng.choice(len(questions), offtopic_samples, replace=False).tolist())
        questions = [questions[i] for i in picked]

    def top_dense(text: str) -> float:
        hits = retriever.index.dense_search(retriever.embedder.embed_query(text), 1, UNRESTRICTED)
        return hits[0].scores.get("dense", hits[0].score) if hits else 0.0

    empty = retriever.index.count() == 0
    positives: list[str] = []
    if not empty:
        for chunk in _sample_passages(retriever, samples, rng):
            q = pseudo_question(chunk, rng)
            if q is not None:
                positives.append(q)
    pos = [top_dense(q) for q in positives]
    off = [top_dense(q) for q in questions] if not empty else []
    off_dense = round(_median(off, default.off_dense), 3)
    on_dense = round(max(_median(pos, default.on_dense), off_dense + 0.05), 3)
    policy = replace(default, off_dense=off_dense, on_dense=on_dense)
    probabilities: list[float] = []
    if not empty:
        for q in questions:
            question = Question(text=q)
            query = standalone_query(q, ())
            retrieval = retriever.search(query, service.k, UNRESTRICTED)
            probabilities.append(model.probability(service.evidence(question, query, retrieval, policy)))
    quantile = float(np.quantile(probabilities, OFFTOPIC_TARGET)) if probabilities else 0.0
    threshold = model.threshold
    if quantile >= threshold:
        threshold = min(quantile + 1e-3, model.threshold + MAX_RAISE)
    declined = float(np.mean([p < threshold for p in probabilities])) if probabilities else 1.0
    policy = replace(
        policy,
        threshold=round(threshold, 4),
        related_dense=round(max(default.related_dense, (off_dense + on_dense) / 2), 3),
    )
    report = Calibration(
        policy,
        len(pos),
        len(off),
        round(_median(pos, 0.0), 3),
        round(_median(off, 0.0), 3),
        model.threshold,
        round(quantile, 4),
        round(declined, 4),
        round(time.perf_counter() - started, 2),
    )
    log.info("calibrated %s in %.1fs", policy, report.seconds)
    return report


def calibrate(service: AnswerService, **kwargs: object) -> DeclinePolicy:
    """The calibrated DeclinePolicy for the knowledge base behind ``service``."""
    return calibrate_report(service, **kwargs).policy  # type: ignore[arg-type]


def save(path: Path, count: int, report: Calibration) -> None:
    """Store a calibration for an index of ``count`` chunks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "version": VERSION,
                "count": count,
                "policy": asdict(report.policy),
                "why": report.explain(),
            }
        )
    )
    with _lock:
        _cache[path] = (count, report.policy)


def load_or_calibrate(path: Path, service: AnswerService) -> DeclinePolicy:
    """The stored policy for this index, calibrating when there is none or the index changed."""
    count = service.retriever.index.count()
    with _lock:
        cached = _cache.get(path)
        if cached and cached[0] == count:
            return cached[1]
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == VERSION and int(data.get("count", -1)) == count:
                    known = {f.name for f in fields(DeclinePolicy)}
                    policy = DeclinePolicy(**{k: v for k, v in data["policy"].items() if k in known})
                    _cache[path] = (count, policy)
                    return policy
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable calibration file %s", path)
    report = calibrate_report(service, model=default_model())
    save(path, count, report)
    return report.policy
