"""Answerability: a small learned model of whether the knowledge base answers a question.

The decline decision used to be a set of hand-set gates (a cosine threshold, a keyword
support threshold, answer-type patterns, word lists). Those were fitted to the questions of
particular evaluation sets and did not carry over to knowledge bases nobody tuned on. This
module replaces them with one logistic regression over features that mean the same on any
corpus; its output is the probability that the answer is correct, shown as
``Answer.confidence``.

Features (all computed from the retrieval, the question and the corpus's own statistics):

- ``dense_top`` / ``dense_gap``: the best passage's cosine and its lead over the second;
- ``dense_rel``: ``dense_top`` placed between where this knowledge base's off-topic questions
  (a general bank) and its own pseudo-questions score (0: off-topic level, 1: on-topic level;
  measured per knowledge base by bot/calibration.py);
- ``sentence_cos``: the best cosine between the question and one sentence of the top passages;
- ``kw_norm``: the best keyword (BM25) score divided by the summed IDF of the query's words;
- ``coverage``: the share of the query's content words in the best keyword hit;
- ``support_own`` / ``support_query``: the IDF-weighted share of the last turn's (the
  standalone query's) content words found in one of the top passages;
- ``sentence_support``: the same share, in the best single sentence;
- ``missing_idf``: the rarity (IDF / log N) of the rarest asked word the top passages lack;
- ``own_terms``, ``followup``: how many content words the last turn has, whether it has history;
- ``type_asked`` / ``type_missing``: the question asks for a kind of answer (a number, a
  duration, …; bot/answertype.py) / and the top passages' best sentences hold none;
- ``agree``: the dense and the keyword search put the same document first.

The weights are trained by ``bench/generalization.py --train`` with scikit-learn (a dev
dependency) and shipped as ``bot/assets/answerability.json``; at run time only numpy reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from bot.answertype import expected_type, has_type
from bot.text import content_words
from bot.types import ScoredChunk

MODEL_PATH = Path(__file__).parent / "assets" / "answerability.json"

FEATURES = (
    "dense_top",
    "dense_gap",
    "dense_rel",
    "sentence_cos",
    "kw_norm",
    "coverage",
    "support_own",
    "support_query",
    "sentence_support",
    "missing_idf",
    "own_terms",
    "followup",
    "type_asked",
    "type_missing",
    "agree",
)

TOP_PASSAGES = 3  # support and sentence features look at this many passages


@dataclass(frozen=True)
class KBLevels:
    """Where questions score on one knowledge base: the typical top cosine of an off-topic
    question (``off_dense``) and of a question its own passages answer (``on_dense``)."""

    off_dense: float = 0.25
    on_dense: float = 0.6


def _stem(word: str) -> str:
    from bot.retrieval import light_stem

    return light_stem(word)


def _weighted_share(terms: Sequence[tuple[str, float]], text: str) -> float:
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    have = {_stem(w) for w in content_words(text)}
    return sum(w for t, w in terms if t in have) / total


def features(
    question: str,
    query: str,
    *,
    followup: bool,
    passages: Sequence[ScoredChunk],
    dense: Sequence[ScoredChunk],
    keyword: Sequence[ScoredChunk],
    coverage: float | None,
    idf: Callable[[str], float],
    max_idf: float,
    sentence_cos: float,
    levels: KBLevels,
) -> dict[str, float]:
    """The feature values for one question (see the module docstring)."""
    from bot.extractive import split_sentences

    own = list(dict.fromkeys(content_words(question)))
    carried = [w for w in dict.fromkeys(content_words(query)) if w not in own]
    own_w = [(_stem(w), idf(w)) for w in own]
    query_w = own_w + [(_stem(w), 0.5 * idf(w)) for w in carried]
    top = list(passages[:TOP_PASSAGES])
    texts = [f"{p.chunk.context}\n{p.chunk.text}" for p in top]
    sentences = [s for p in top for s in split_sentences(p.chunk.text)]
    dense_scores = sorted((p.scores.get("dense", 0.0) for p in passages), reverse=True)
    raw_dense = [h.scores.get("dense", h.score) for h in dense]
    dense_top = max([*dense_scores[:1], *raw_dense[:1], 0.0])
    second = raw_dense[1] if len(raw_dense) > 1 else 0.0
    span = max(levels.on_dense - levels.off_dense, 0.05)
    present = {_stem(w) for t in texts for w in content_words(t)}
    missing = [idf(w) for w in own if _stem(w) not in present]
    idf_sum = sum(idf(w) for w in dict.fromkeys([*own, *carried])) or 1.0
    kind = expected_type(question)
    typed = kind is not None and any(has_type(s, kind, question) for s in sentences)
    return {
        "dense_top": dense_top,
        "dense_gap": max(dense_top - second, 0.0) if raw_dense else 0.0,
        "dense_rel": float(np.clip((dense_top - levels.off_dense) / span, -2.0, 2.0)),
        "sentence_cos": max(sentence_cos, 0.0),
        "kw_norm": min((keyword[0].score if keyword else 0.0) / idf_sum, 3.0),
        "coverage": coverage or 0.0,
        "support_own": max((_weighted_share(own_w, t) for t in texts), default=0.0),
        "support_query": max((_weighted_share(query_w, t) for t in texts), default=0.0),
        "sentence_support": max((_weighted_share(own_w, s) for s in sentences), default=0.0),
        "missing_idf": (max(missing) / max_idf) if missing and max_idf > 0 else 0.0,
        "own_terms": math.log1p(len(own)),
        "followup": 1.0 if followup else 0.0,
        "type_asked": 1.0 if kind is not None else 0.0,
        "type_missing": 1.0 if kind is not None and not typed else 0.0,
        "agree": 1.0 if dense and keyword and dense[0].chunk.doc_id == keyword[0].chunk.doc_id else 0.0,
    }


@dataclass(frozen=True)
class AnswerabilityModel:
    """A logistic regression over standardised :data:`FEATURES` (weights from JSON)."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float  # the default decline threshold on the probability (chosen leave-one-set-out)

    def probability(self, values: Mapping[str, float]) -> float:
        """The calibrated probability (0..1) that an answer to a question with ``values`` is correct."""
        x = np.array([values.get(n, 0.0) for n in self.names], dtype=np.float64)
        z = float(((x - self.mean) / self.scale) @ self.coef + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def to_json(self) -> dict[str, object]:
        return {
            "features": list(self.names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> AnswerabilityModel:
        names = tuple(str(n) for n in data["features"])  # type: ignore[attr-defined]
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(names),) for a in arrays):
            raise ValueError("answerability model: mean, scale and coef need one value per feature")
        mean, scale, coef = arrays
        return cls(
            names,
            mean,
            np.where(scale > 0, scale, 1.0),
            coef,
            float(data["intercept"]),  # type: ignore[arg-type]
            float(data["threshold"]),  # type: ignore[arg-type]
        )


@cache
def default_model() -> AnswerabilityModel:
    """The shipped model (``bot/assets/answerability.json``)."""
    return AnswerabilityModel.from_json(json.loads(MODEL_PATH.read_text(encoding="utf-8")))
