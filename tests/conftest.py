"""Fixtures shared by the whole suite: an application on SQLite (the default) or PostgreSQL,
the organization with its built-in roles, users, signed-in clients and API clients.

A test module opts into PostgreSQL as well with ``pytestmark = pytest.mark.both_databases``;
PostgreSQL tests skip with a clear reason when 127.0.0.1:5432 is not reachable (CI has it).
"""
from __future__ import annotations

import os
import uuid

import pytest
from cryptography.fernet import Fernet
from flask import g, request_started
from sqlalchemy import create_engine, text

pytest_plugins = ["tests.servers.fixtures"]

PG_ADMIN_URL = os.environ.get("REGARDING_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENCRYPTION_KEY = Fernet.generate_key().decode()
# The test peers (Dovecot, aiosmtpd, fake Graph/EWS) listen on loopback, which email server
# profiles may reach only when the organization allows it (server.sync.engine.hosts).
LOOPBACK_PEERS = "127.0.0.0/8, ::1, localhost"


def pytest_configure(config):
    config.addinivalue_line("markers", "both_databases: run on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "slow: long-running scenario")
    # SQLAlchemy warns where the code asked for something it did not do (an execution
    # option ignored, a relationship it cannot order): a test that provokes one fails.
    config.addinivalue_line("filterwarnings", "error::sqlalchemy.exc.SAWarning")


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("both_databases"):
            backends.append("postgresql")
        metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """Argon2id with minimal cost in tests: hashes stay real (and verifiable), just fast."""
    from argon2 import PasswordHasher
    from server.security import passwords
    saved = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    passwords._hasher = saved


@pytest.fixture
def db_backend(request):
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_database():
    """A throw-away PostgreSQL database for this test session, with the schema created once."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"regarding_test_{uuid.uuid4().hex[:10]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_config(url: str, tmp_path) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "test-secret-key",
        "REGARDING_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "WTF_CSRF_ENABLED": False,
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
        "REGARDING_INSTANCE_DIR": str(tmp_path),
        "REGARDING_LOG_LEVEL": "WARNING",
        "REGARDING_MAILDIR_ROOT": str(tmp_path),  # Maildir stores the tests make are here
    }


@pytest.fixture
def app(request, db_backend, tmp_path):
    from server import create_app
    from server.db import db

    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path / 'test.db'}"
    app = create_app(make_config(url, tmp_path))
    # Requests made while this fixture's app context is pushed share it, and so share ``g``:
    # without this, the user one client signed in (Flask-Login keeps it in ``g``) would be
    # the current user of the next request of any client.
    request_started.connect(_fresh_request_globals, app)
    with app.app_context():
        db.create_all()
        from server.security.bootstrap import ensure_organization
        org = ensure_organization("Contoso Test")
        org.mail_server_allowed_hosts = LOOPBACK_PEERS
        db.session.commit()
        yield app
        db.session.rollback()
        db.session.remove()
        if db_backend == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


def _fresh_request_globals(sender, **extra):
    """Start every test request with an empty ``g``, as a request in production does."""
    g.__dict__.clear()


@pytest.fixture
def make_user(app):
    """Create a user: ``make_user("ann@contoso.test", roles=["Salesperson"], unit=bu)``."""
    from server.db import db
    from server.security.bootstrap import create_user
    counter = iter(range(1, 10_000))

    def make(email: str | None = None, *, roles=("Salesperson",), unit=None, name=None,
             password="Correct-horse-9", **extra):
        n = next(counter)
        email = email or f"user{n}@contoso.test"
        user = create_user(email, name or f"Test User{n}", password=password, unit=unit,
                           roles=list(roles), **extra)
        db.session.commit()
        return user
    return make


@pytest.fixture
def make_unit(app):
    from server.db import db
    from server.security.bootstrap import root_unit
    from server.security.models import BusinessUnit

    def make(name: str, parent=None):
        unit = BusinessUnit(name=name, parent_id=(parent or root_unit()).id)
        db.session.add(unit)
        db.session.commit()
        return unit
    return make


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def signin(app):
    """``signin(user)`` → a test client with a signed-in session for that user."""
    def do(user, password="Correct-horse-9"):
        c = app.test_client()
        r = c.post("/signin", data={"email": user.email, "password": password})
        assert r.status_code == 302, r.get_data(as_text=True)[:500]
        return c
    return do


class ApiClient:
    """A test client that sends a bearer token and JSON."""

    def __init__(self, client, token):
        self.client, self.token = client, token

    def _call(self, method, path, **kw):
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return getattr(self.client, method)(path, headers=headers, **kw)

    def get(self, path, **kw): return self._call("get", path, **kw)
    def post(self, path, **kw): return self._call("post", path, **kw)
    def patch(self, path, **kw): return self._call("patch", path, **kw)
    def put(self, path, **kw): return self._call("put", path, **kw)
    def delete(self, path, **kw): return self._call("delete", path, **kw)


@pytest.fixture
def api_client(app):
    """``api_client(user)`` → an ApiClient authenticated with a fresh API token."""
    from server.db import db
    from server.security import tokens

    def make(user, kind="api"):
        _, secret = tokens.issue(user, "test", kind=kind)
        db.session.commit()
        return ApiClient(app.test_client(), secret)
    return make
