"""Alembic environment: runs on the connection adapters.db.migrate passes in."""

from alembic import context

from adapters.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI path: `alembic -x url=...`
    import sqlalchemy as sa

    url = context.get_x_argument(as_dictionary=True)["url"]
    connection = sa.create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
