"""Per-knowledge-base calibration of the decline policy.

Score thresholds do not carry from one knowledge base to another (a cosine that means
"on topic" for one corpus is noise in another), so the dense threshold is computed from
the corpus itself, with pseudo-questions, and cached in the data directory; it is
recomputed when the index has changed size by more than a tenth.

The pseudo-questions (seeded, so the result is deterministic for an index):

- positives: key words of one sentence of a sampled passage, asked as a question;
- off-topic negatives: generic questions no support knowledge base is about;
- swapped negatives: a positive whose rarest key word is replaced by a word the corpus
  does not contain (an in-domain question the documents cannot answer).

``min_dense`` is set where most off-topic questions fall below it, without cutting into
the positives. ``min_support`` is a ratio (share of the asked terms the cited passage
holds) and carries across corpora; calibration only checks it against the swapped
negatives and the positives and moves it if the corpus needs it.

Passages are sampled through the index's own dense search with random seeded directions,
so any ChunkIndex works. The whole run is ~100 searches: a few seconds at most.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from bot.answering import DeclinePolicy, TermStats, key_terms, support
from bot.extractive import split_sentences
from bot.retrieval import Retriever
from bot.types import UNRESTRICTED, Chunk

log = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[Path, tuple[int, DeclinePolicy]] = {}

SEED = 20240611
VERSION = 4  # bump when the procedure changes so cached results are recomputed

OFF_TOPIC = (
    "What is the capital of Australia?",
    "Who won the football world cup in 1998?",
    "How do I bake sourdough bread at home?",
    "What is a good recipe for vegetable lasagna?",
    "How tall is Mount Everest?",
    "Who painted the Mona Lisa?",
    "What is the best way to train a puppy to sit?",
    "How many moons does Jupiter have?",
    "What should I plant in my garden in early spring?",
    "Which wine goes well with grilled salmon?",
    "How do I knit a wool scarf for beginners?",
    "When did the Roman empire fall?",
    "What are the rules of cricket?",
    "How do I fix a flat bicycle tyre?",
    "What is the plot of Hamlet?",
    "How long should I boil an egg?",
    "Who was the first person to walk on the moon?",
    "What causes rainbows to appear after rain?",
    "How can I improve my marathon running time?",
    "What is the population of Brazil?",
    "Which birds migrate south for the winter?",
    "How do I remove a red wine stain from a carpet?",
    "What are the symptoms of the common cold?",
    "Who composed the Four Seasons?",
    "How do volcanoes form?",
    "What is the best time of year to visit Japan?",
    "How do I make a paper airplane fly farther?",
    "What language is spoken in Brazil?",
    "How many players are on a basketball team?",
    "What is the difference between a crocodile and an alligator?",
    "How do I tune a guitar by ear?",
    "What did dinosaurs eat?",
)

# Words support documentation rarely contains; one absent from the corpus replaces a
# positive's rarest key word to make an in-domain question the corpus cannot answer.
FOREIGN = (
    "giraffe",
    "saxophone",
    "lasagna",
    "volcano",
    "tuxedo",
    "marathon",
    "pelican",
    "harpsichord",
    "origami",
    "avalanche",
    "mermaid",
    "trombone",
    "cathedral",
    "kangaroo",
    "tapestry",
    "walrus",
)

TEMPLATES = ("How do I {}?", "What is {}?", "{}", "Can I {}?")


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


def _pseudo_question(chunk: Chunk, rng: np.random.Generator) -> str | None:
    sentences = [s for s in split_sentences(chunk.text) if 4 <= len(key_terms(s)) <= 40]
    if not sentences:
        return None
    terms = key_terms(sentences[int(rng.integers(len(sentences)))])
    start = int(rng.integers(max(1, len(terms) - 5)))
    picked = terms[start : start + 5]
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(" ".join(picked))


def _quantile(values: list[float], q: float, default: float) -> float:
    return float(np.quantile(np.asarray(values), q)) if values else default


def calibrate(retriever: Retriever, *, samples: int = 40, seed: int = SEED) -> DeclinePolicy:
    """A DeclinePolicy for the knowledge base behind ``retriever`` (deterministic for a seed)."""
    started = time.perf_counter()
    default = DeclinePolicy()
    if retriever.index.count() == 0:
        return default
    rng = np.random.default_rng(seed)
    terms = TermStats(retriever.index)
    absent = [w for w in FOREIGN if terms.idf(w) >= terms.idf("\x00never\x00") - 1e-9]

    def top_dense(question: str) -> float:
        hits = retriever.index.dense_search(retriever.embedder.embed_query(question), 1, UNRESTRICTED)
        return hits[0].scores.get("dense", hits[0].score) if hits else 0.0

    def best_support(question: str) -> float:
        hits = retriever.search(question, 2, UNRESTRICTED).passages
        return support(question, [h.chunk.text + " " + h.chunk.context for h in hits], idf=terms.idf)

    pos_dense: list[float] = []
    pos_support: list[float] = []
    swap_support: list[float] = []
    for chunk in _sample_passages(retriever, samples, rng):
        question = _pseudo_question(chunk, rng)
        if question is None:
            continue
        pos_dense.append(top_dense(question))
        pos_support.append(best_support(question))
        words = key_terms(question)
        if absent and words:
            # The two rarest key words: what the question is really about.
            swapped = question
            for rare in sorted(words, key=terms.idf, reverse=True)[:2]:
                swapped = swapped.replace(rare, absent[int(rng.integers(len(absent)))], 1)
            swap_support.append(best_support(swapped))
    off_dense = [top_dense(q) for q in OFF_TOPIC]

    # Dense gate: halfway between where off-topic questions end (their 90th percentile)
    # and where on-topic ones sit (the positives' median), never above the positives' lower
    # quartile. A midpoint, not a fitted value: it only needs both clusters to exist.
    off_high = _quantile(off_dense, 0.9, 0.0)
    pos_mid = _quantile(pos_dense, 0.5, default.min_dense)
    min_dense = round(max(0.0, min((off_high + pos_mid) / 2, _quantile(pos_dense, 0.25, 1.0))), 3)
    # Support: a ratio (share of the asked terms the cited passage holds) that carries across
    # corpora. It is only raised when swapped questions here commonly reach it (a corpus whose
    # passages repeat most words), and never above the positives' lower decile.
    min_support = default.min_support
    swapped_typical = _quantile(swap_support, 0.25, 0.0)
    if swapped_typical > min_support:
        min_support = min(swapped_typical, _quantile(pos_support, 0.1, 1.0))
    policy = DeclinePolicy(
        min_dense=min_dense,
        min_support=round(min_support, 3),
        related_dense=round(min_dense + 0.1, 3),
        carried_weight=default.carried_weight,
    )
    log.info(
        "calibrated %s from %d positives, %d swapped, %d off-topic in %.1fs",
        policy,
        len(pos_dense),
        len(swap_support),
        len(off_dense),
        time.perf_counter() - started,
    )
    return policy


def load_or_calibrate(path: Path, retriever: Retriever) -> DeclinePolicy:
    """The cached policy for this index, calibrating when there is none or the index changed."""
    count = retriever.index.count()
    with _lock:
        cached = _cache.get(path)
        if cached and _close(cached[0], count):
            return cached[1]
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == VERSION and _close(int(data.get("count", -1)), count):
                    known = {f.name for f in fields(DeclinePolicy)}
                    policy = DeclinePolicy(**{k: v for k, v in data["policy"].items() if k in known})
                    _cache[path] = (count, policy)
                    return policy
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable calibration file %s", path)
        policy = calibrate(retriever)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": VERSION, "count": count, "policy": asdict(policy)}))
        _cache[path] = (count, policy)
        return policy


def _close(a: int, b: int) -> bool:
    return a == b or (a > 0 and abs(a - b) <= 0.1 * a)
