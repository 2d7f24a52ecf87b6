"""The ``supportbot`` command line (an entry point: it alone uses the composition root).

One module per command group; each imports what its commands need when they run, so a
command loads only its own dependencies (``--help`` loads none of them).

- :mod:`~adapters.cli.ingest`: ``ingest``, ``rollback``, ``calibrate``
- :mod:`~adapters.cli.ask`: ``search``, ``ask``, ``chat``
- :mod:`~adapters.cli.serve`: ``serve``, ``slack``, ``worker``
- :mod:`~adapters.cli.teams`: ``teams-package``
- :mod:`~adapters.cli.evaluate`: ``eval answers|retrieval``
- :mod:`~adapters.cli.sources`: ``sources add|list|sync|remove``
- :mod:`~adapters.cli.export`: ``export finetune``
- :mod:`~adapters.cli.common`: the consoles, the one error helper (``fail``), the services
"""

from __future__ import annotations

import gc

import typer

from adapters.cli import ask, ingest, serve, teams
from adapters.cli.evaluate import eval_app
from adapters.cli.export import export_app
from adapters.cli.sources import sources_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Answers support questions from your own knowledge.")

# The order of the --help listing.
app.command()(ingest.calibrate)
app.command()(ingest.ingest)
app.command()(ingest.rollback)
app.command()(ask.search)
app.command()(ask.ask)
app.command()(ask.chat)
app.command()(serve.serve)
app.command("slack")(serve.slack)
app.command("teams-package")(teams.teams_package)
app.command()(serve.worker)
app.add_typer(eval_app, name="eval")
app.add_typer(sources_app, name="sources")
app.add_typer(export_app, name="export")


def main() -> None:
    try:
        app()
    finally:
        # The interpreter's last garbage collection walks every object a command built (the
        # model session, SQLAlchemy's and pydantic's tables): ~0.15 s of a cold `ask` spent after
        # the answer is out (docs/measurements.md). Nothing a command needs happens in it (files
        # are closed and databases committed by then; atexit handlers and thread joins still
        # run), so those objects are left out of it.
        gc.freeze()


