"""A client given as-is, or built once, on first use, by a zero-argument factory.

Providers take either an SDK client (tests aim one at a fake server) or a factory (the
composition root), so constructors have no side effects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyClient(Generic[T]):
    def __init__(self, source: T | Callable[[], T], kind: type[T], closer: Callable[[T], None]) -> None:
        self._source = source
        self._kind = kind
        self._closer = closer
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    source = self._source
                    self._value = source if isinstance(source, self._kind) else source()  # type: ignore[operator]
        return self._value

    def close(self) -> None:
        """Close the client if it was built here from a factory (a given one is the caller's)."""
        with self._lock:
            value, self._value = self._value, None
            if value is not None and not isinstance(self._source, self._kind):
                self._closer(value)
