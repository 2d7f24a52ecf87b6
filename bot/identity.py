"""A document's identity: the source it was filed under and where it came from.

Two documents are the same document exactly when they have the same source and the same
location — the full ``file://`` URI of the absolute path, or the URL it was fetched from
(a JSONL corpus row adds its ``_id`` as the fragment). ``document_id`` turns that pair into
the ``doc_id`` used everywhere (index, version history, sync state); it is deterministic, so
re-ingesting a file finds its earlier versions, and two ``index.md`` in two folders are two
documents.

- A file: ``"{source}:{hash}/{file name}"`` where ``hash`` is 24 hex digits of SHA-256 over
  the source and the file URI; a row of a JSONL file: the same plus ``"#{quoted _id}"``. The
  hash keeps the server's folders out of ids (ids reach API clients) and ids short; the name
  keeps them readable; the full path stays in the document's ``url``.
- A URL: ``"{source}:{url}"`` (unchanged from before, already the full location).

Ids written before this scheme (``"{source}:{path relative to the folder given}"`` for files,
the bare ``_id`` for JSONL rows) are renamed when the database is migrated (Alembic 0005):
the stored ``url`` of each document gives the new id.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

__all__ = ["corpus_id", "document_id"]

_HASH_HEX = 24


def document_id(source: str, url: str) -> str:
    """The id of the document of ``source`` found at ``url`` (see the module docstring)."""
    if url.startswith("file:"):
        # Path.as_uri() percent-encodes a "#" in a path, so a "#" here is the JSONL row's.
        base, sep, fragment = url.partition("#")
        digest = hashlib.sha256(f"{source}\x00{base}".encode()).hexdigest()[:_HASH_HEX]
        name = unquote(base.rsplit("/", 1)[-1]).replace("#", "%23")  # readable; "#" is the row's
        return f"{source}:{digest}/{name}" + (f"#{fragment}" if sep else "")
    return f"{source}:{url}"


def corpus_id(doc_id: str) -> str:
    """The ``_id`` a JSONL corpus gave a document (what BEIR qrels name), else ``doc_id``.

    JSONL rows have ids ending in ``#{quoted _id}``; the quoted ``_id`` holds no ``#``.
    """
    _, sep, fragment = doc_id.rpartition("#")
    return unquote(fragment) if sep else doc_id
