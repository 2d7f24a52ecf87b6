"""The dense side: helpers of the in-memory float32 matrix (one row per chunk position).

Below ``LocalIndex.approx_min_rows`` positions a search is the exact cosine (one
matrix-vector product). From there on each row also keeps its sign bits (48 bytes at 384
dimensions, word-major); :func:`prefilter` ranks every allowed row by them against the float
query quantised to 4 bits (a weighted Hamming distance, integer popcounts only) and the
best candidates are rescored exactly. Scores are always exact cosines; only a row the sign
bits rank very low can be missed. The measurements behind the design: docs/measurements.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_controller: Any = None


def blas_single_thread() -> Any:
    """One BLAS thread for the matrix-vector product: it is memory-bound, and idle BLAS threads
    spinning against the embedder's threads on a small machine cost more than they give."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController  # on the first search, not on import

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def prefilter(bits: np.ndarray, n: int, query: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` allowed positions (of the first ``n``) whose sign bits score best against ``query``.

    The score estimates ``query . row`` by ``query . sign(row)`` with ``query`` quantised
    to sign plus 4 magnitude bits: a Hamming distance where dimension i weighs
    ``round(15 |q_i| / max |q|)``, as popcounts over the word-major sign bits. The
    alternatives measured: docs/measurements.md.
    """
    levels = 15
    magnitude = np.abs(query)
    top = float(magnitude.max()) if len(magnitude) else 0.0
    if not top > 0:  # a zero (or nan) query ranks nothing: keep the first allowed rows
        return np.flatnonzero(mask)[:count]
    weight = np.rint(magnitude * (levels / top)).astype(np.uint8)
    sign = sign_words(query[None, :])[0]
    planes = [sign_words(((weight >> p) & 1)[None, :])[0] for p in range(levels.bit_length())]
    # Per-plane popcount sums; the weighted total (at most levels x dimensions) in place.
    acc = np.zeros((len(planes), n), dtype=np.uint16 if levels * len(query) < 1 << 16 else np.uint32)
    diff = np.empty(n, dtype=np.uint64)
    both = np.empty(n, dtype=np.uint64)
    ones = np.empty(n, dtype=np.uint8)
    for j in range(len(sign)):
        np.bitwise_xor(bits[j, :n], sign[j], out=diff)
        for p, plane in enumerate(planes):
            if plane[j]:
                np.bitwise_and(diff, plane[j], out=both)
                np.bitwise_count(both, out=ones)
                acc[p] += ones
    distance = acc[0]
    for p in range(1, len(planes)):
        acc[p] <<= p
        distance += acc[p]
    np.putmask(distance, ~mask, np.iinfo(distance.dtype).max)
    return np.argpartition(distance, count - 1)[:count]


def lookup(allowed: Sequence[int], ids: np.ndarray) -> np.ndarray:
    """``np.isin(ids, allowed)`` for small non-negative ids, by a lookup table (~5x faster)."""
    if len(ids) == 0 or not allowed:
        return np.zeros(len(ids), dtype=bool)
    table = np.zeros(max(int(ids.max()), max(allowed)) + 1, dtype=bool)
    table[np.asarray(allowed, dtype=np.int64)] = True
    return table[ids]


def words(dimension: int) -> int:
    """uint64 words per row of sign bits."""
    return (dimension + 63) // 64


def sign_words(x: np.ndarray) -> np.ndarray:
    """(rows, d) -> (rows, words) uint64: the bits of ``x > 0``, zero-padded to whole words."""
    packed = np.packbits(x > 0, axis=1)
    pad = words(x.shape[1]) * 8 - packed.shape[1]
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def grow(array: np.ndarray, capacity: int, fill: float = 0) -> np.ndarray:
    shape = (capacity,) + array.shape[1:]
    out = np.full(shape, fill, dtype=array.dtype)
    out[: len(array)] = array
    return out
