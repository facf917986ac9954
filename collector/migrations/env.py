"""Alembic environment: the URL comes from `collector migrate` (settings) or -x url=..."""

from alembic import context

from collector import models  # noqa: F401  (registers every table on Base.metadata)
from collector.db import Base, make_engine

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
    "sqlalchemy.url")
connection = config.attributes.get("connection")


def run(conn):
    context.configure(connection=conn, target_metadata=Base.metadata,
                      render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = make_engine(url)
    with engine.connect() as conn:
        run(conn)
    engine.dispose()
