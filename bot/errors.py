"""The one exception tree of supportbot.

::

    SupportbotError
     ├── ConfigError            settings are missing or contradict each other (fix the config)
     ├── SourceError            one document or source could not be loaded (the batch goes on)
     │    ├── UnsafeURLError    a URL points at a private, loopback, link-local or metadata address
     │    └── SourceSkipped     left out on purpose: unsupported type, excluded by a pattern, empty
     ├── AccessDenied           the asker may not do this (ingest without admin rights, ...)
     ├── RateLimited            too many questions or ingests from one user or channel
     └── ProviderError          an embedder, index, reranker, generator or store failed
          ├── ProviderUnavailable   transient: timeouts, 429, 5xx, connection errors (retry)
          └── ProviderRejected      permanent: bad key, bad request, malformed reply (don't retry)

Adapters turn SDK exceptions into these; messages never contain secrets.
"""

from __future__ import annotations


class SupportbotError(Exception):
    """Base class of every error supportbot raises on purpose."""


class ConfigError(SupportbotError):
    """The configuration is invalid or incomplete."""


class SourceError(SupportbotError):
    """A document or source could not be loaded; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnsafeURLError(SourceError):
    """A URL was refused by the SSRF rules."""


class SourceSkipped(SourceError):
    """A file was left out on purpose (unsupported type, excluded by a pattern, empty): not a failure."""


class AccessDenied(SupportbotError):
    """The asker is not allowed to do this."""


class RateLimited(SupportbotError):
    """Too many requests; ``retry_after`` is in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderError(SupportbotError):
    """A provider (embedder, index, reranker, generator, store) failed."""


class ProviderUnavailable(ProviderError):
    """A transient failure: worth retrying with backoff."""


class ProviderRejected(ProviderError):
    """A permanent failure: retrying will not help."""
