"""A throwaway database for one benchmark run: a SQLite file under /tmp, or a fresh
PostgreSQL database (on ``REGARDING_BENCH_PG``, default the local server) dropped after."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("REGARDING_BENCH_PG",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def scratch_database(kind: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """(database URL, a function that drops it) for ``kind`` "sqlite" or "postgresql"."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix=f"regarding-{prefix}-"))
        return f"sqlite:///{folder / f'{prefix}.db'}", lambda: shutil.rmtree(folder, ignore_errors=True)
    name = f"regarding_{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def bench_app(url: str, prefix: str, **config):
    """The application on ``url`` with a fresh instance folder and encryption key, quiet
    logs and a one-second worker poll (``config`` adds to or overrides that)."""
    from cryptography.fernet import Fernet
    from server import create_app
    instance = tempfile.mkdtemp(prefix=f"regarding-{prefix}-instance-")
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench",
                       "REGARDING_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                       "REGARDING_INSTANCE_DIR": instance, "REGARDING_LOG_LEVEL": "WARNING",
                       "REGARDING_SYNC_POLL_SECONDS": 1.0, **config})
