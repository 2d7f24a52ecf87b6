"""A local folder: every supported file under it, its change marker being size and mtime.

Options: ``path``; ``include`` and ``exclude`` (comma-separated glob patterns, ``.gitignore``
semantics, relative to the folder); ``ignore_files`` (comma-separated names of ``.gitignore``-style
files honoured in every folder; default ``.gitignore,.supportbotignore``; empty for none).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bot.errors import SourceError
from bot.ports import RemoteItem
from bot.types import Document
from knowledge.connectors.base import ConnectorContext
from knowledge.fetch import SourceGone
from knowledge.loaders import FileSelection, load_file, walk_files


class FolderConnector:
    """Options: see the module docstring. Hidden files and Office lock files are ignored."""

    kind = "folder"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.root = Path(ctx.option("path")).expanduser()
        self.select = FileSelection.from_text(
            ctx.options.get("include", ""), ctx.options.get("exclude", ""), ctx.options.get("ignore_files")
        )

    def items(self) -> Iterator[RemoteItem]:
        """Every supported file, walked in sorted order; a missing folder raises (no mass deletion)."""
        if not self.root.is_dir():
            raise SourceError(str(self.root), "the folder does not exist (or is not mounted)")
        for entry in walk_files([self.root], self.select):
            rel = entry.path.relative_to(self.root).as_posix()
            if entry.error:
                yield RemoteItem(rel, error=entry.error)
                continue
            if entry.skip:  # unsupported, excluded or ignored: not part of the source
                continue
            try:
                stat = entry.path.stat()
            except OSError as exc:
                yield RemoteItem(rel, error=f"cannot read: {exc.strerror or exc}")
                continue
            yield RemoteItem(
                rel, marker=f"{stat.st_mtime_ns}:{stat.st_size}", url=entry.path.as_uri(), title=entry.path.name
            )

    def load(self, item: RemoteItem) -> list[Document]:
        """The documents of one file (several for a JSONL corpus)."""
        path = self.root / item.external_id
        if not path.exists():
            raise SourceGone(str(path), "deleted since the listing")
        return load_file(
            path, source=self.ctx.source, root=self.root, access=self.ctx.access, max_bytes=self.ctx.max_bytes
        )
