"""A local cross-encoder reranker: an ONNX model that reads (question, passage) pairs.

The model directory (setting ``SUPPORTBOT_CROSS_ENCODER_DIR``) holds ``model.onnx`` and
``tokenizer.json`` (a Hugging Face *tokenizers* file), e.g. an export of
``cross-encoder/ms-marco-MiniLM-L-6-v2``. Nothing is downloaded. The model takes
``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when it declares them) and
returns logits of shape (batch, 1) (or (batch,), or (batch, 2) for a two-class head).

Scores: a single logit goes through the logistic function, a two-class head through
softmax (the "relevant" class), so ``scores["rerank"]`` is in 0..1 like Cohere's.
The passage the model reads is the chunk's title and heading path, then its text.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.errors import ConfigError, ProviderRejected
from bot.types import Chunk, ScoredChunk

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


def passage_text(chunk: Chunk) -> str:
    """What the cross-encoder reads for a chunk: its title and heading path, then its text."""
    return f"{chunk.context}\n{chunk.text}" if chunk.context else chunk.text


def _to_probabilities(logits: npt.NDArray[Any], batch: int) -> npt.NDArray[np.float64]:
    out = np.asarray(logits, dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim == 1 and out.shape[0] == batch:
        logistic: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-out))
        return logistic
    if out.ndim == 2 and out.shape == (batch, 2):
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        relevant: npt.NDArray[np.float64] = shifted[:, 1] / shifted.sum(axis=1)
        return relevant
    raise ConfigError(
        f"cross-encoder output has shape {out.shape}; expected ({batch}, 1), ({batch},) or ({batch}, 2)"
    )


class OnnxCrossEncoder:
    """Reranks with a local ONNX cross-encoder (Reranker protocol); loads on first use.

    Returns at most ``top_k`` of the given passages, best first (ties keep their input
    order), with ``scores["rerank"]`` added to their scores and ``score`` equal to it.
    """

    def __init__(
        self,
        model_dir: Path | None,
        *,
        max_length: int = 512,
        batch_size: int = 16,
        threads: int = 0,
    ) -> None:
        self._model_dir = model_dir
        self._max_length = max_length
        self._batch_size = max(1, batch_size)
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()
        self.name = f"cross-encoder:{model_dir.name if model_dir else 'unset'}:{max_length}"

    def _load(self) -> None:
        if self._model_dir is None:
            raise ConfigError(
                "the cross-encoder reranker needs SUPPORTBOT_CROSS_ENCODER_DIR (model.onnx + tokenizer.json)"
            )
        model, tokenizer_file = self._model_dir / MODEL_FILE, self._model_dir / TOKENIZER_FILE
        for needed in (model, tokenizer_file):
            if not needed.is_file():
                raise ConfigError(
                    f"cross-encoder directory {self._model_dir} has no {needed.name} "
                    f"(it needs {MODEL_FILE} and {TOKENIZER_FILE})"
                )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ConfigError(f"{tokenizer_file} is not a tokenizers file: {exc}") from exc
        padding = tokenizer.padding or {}
        tokenizer.enable_truncation(self._max_length)
        tokenizer.enable_padding(
            pad_id=int(padding.get("pad_id", 0)),
            pad_type_id=int(padding.get("pad_type_id", 0)),
            pad_token=str(padding.get("pad_token", "[PAD]")),
        )
        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types are not importable portably
            raise ConfigError(f"{model} could not be loaded: {exc}") from exc
        inputs = {i.name for i in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs
        if missing:
            raise ConfigError(f"{model} does not take {', '.join(sorted(missing))}")
        self._inputs, self._tokenizer, self._session = inputs, tokenizer, session

    def _ensure_loaded(self) -> None:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query``, 0..1."""
        if not passages:
            return []
        self._ensure_loaded()
        scores: list[float] = []
        for start in range(0, len(passages), self._batch_size):
            batch = list(passages[start : start + self._batch_size])
            encodings = self._tokenizer.encode_batch([(query, p) for p in batch])
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            try:
                logits = self._session.run(None, feeds)[0]
            except Exception as exc:  # onnxruntime reports bad inputs with its own exception types
                raise ProviderRejected(f"cross-encoder {self.name} failed: {type(exc).__name__}") from exc
            scores.extend(float(s) for s in _to_probabilities(logits, len(batch)))
        return scores

    def rerank(self, query: str, passages: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        if not passages or top_k <= 0:
            return []
        scores = self.score(query, [passage_text(p.chunk) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))[:top_k]
        return [
            ScoredChunk(
                chunk=passages[i].chunk,
                score=scores[i],
                scores=MappingProxyType({**passages[i].scores, "rerank": scores[i]}),
            )
            for i in order
        ]
