"""A local folder: every supported file under it, its change marker being size and mtime."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from bot.errors import SourceError
from bot.types import Document
from knowledge.connectors.base import ConnectorContext, RemoteItem
from knowledge.fetch import SourceGone
from knowledge.loaders import SUPPORTED_SUFFIXES, load_file


class FolderConnector:
    """Options: ``path`` (the folder). Hidden files and Office lock files are ignored."""

    kind = "folder"

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.root = Path(ctx.option("path")).expanduser()

    def items(self) -> Iterator[RemoteItem]:
        """Every supported file, walked in sorted order; a missing folder raises (no mass deletion)."""
        if not self.root.is_dir():
            raise SourceError(str(self.root), "the folder does not exist (or is not mounted)")
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith((".", "~$")) or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                    continue
                path = Path(dirpath, name)
                try:
                    stat = path.stat()
                except OSError as exc:
                    rel = path.relative_to(self.root).as_posix()
                    yield RemoteItem(rel, error=f"cannot read: {exc.strerror or exc}")
                    continue
                rel = path.relative_to(self.root).as_posix()
                yield RemoteItem(
                    rel, marker=f"{stat.st_mtime_ns}:{stat.st_size}", url=path.as_uri(), title=name
                )

    def load(self, item: RemoteItem) -> list[Document]:
        """The documents of one file (several for a JSONL corpus)."""
        path = self.root / item.external_id
        if not path.exists():
            raise SourceGone(str(path), "deleted since the listing")
        return load_file(
            path, source=self.ctx.source, root=self.root, access=self.ctx.access, max_bytes=self.ctx.max_bytes
        )
