"""What every command shares: the two consoles, the one way to fail, and the services.

Nothing heavy is imported here: each command imports what it needs when it runs, so
``supportbot --help`` or an unchanged re-ingest never loads the answering core, the model
runtime or the answer database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from bot.errors import SupportbotError

if TYPE_CHECKING:
    from adapters.factory import Services

err = Console(stderr=True)
out = Console()


def report_error(message: object) -> None:
    """Say ``error: <message>`` on stderr (the command goes on)."""
    err.print(f"[red]error:[/red] {message}")


def fail(message: object, code: int = 2) -> NoReturn:
    """Say ``error: <message>`` on stderr and end the command with exit code ``code``."""
    report_error(message)
    raise typer.Exit(code)


@contextmanager
def failing(code: int = 2) -> Iterator[None]:
    """A SupportbotError raised inside ends the command through :func:`fail`."""
    try:
        yield
    except SupportbotError as exc:
        fail(exc, code)


def services(**overrides: object) -> Services:
    """The services for the settings (environment and .env, with ``overrides``)."""
    from adapters.factory import build
    from adapters.settings import Settings

    with failing():
        return build(Settings(**overrides)) if overrides else build()  # type: ignore[arg-type]


def question_services() -> Services:
    """The services of a command that embeds questions: the embedding model starts loading on
    a background thread now, while the command imports and opens the rest (index, stores)."""
    built = services()
    if built.settings.embedder == "onnx":  # a cloud embedder has nothing to load
        built.onnx_embedder.preload()
    return built


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --:--"
    seconds = int(seconds)
    return f"ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"ETA {seconds // 60}:{seconds % 60:02d}"

