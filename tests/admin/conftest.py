"""Fixtures for the administration tests: a System Administrator and their client, and
privileges computed as a fresh request would."""
from __future__ import annotations

import re

import pytest


@pytest.fixture
def admin_user(make_user):
    return make_user("admin@contoso.test", roles=["System Administrator"], name="Ada Admin")


@pytest.fixture
def admin_client(signin, admin_user):
    return signin(admin_user)


@pytest.fixture
def fresh_principal(app):
    """``fresh_principal(user_id)``: privileges as a new request would compute them, in a
    new application context (own session, own cache)."""
    from server.db import db
    from server.security import authz
    from server.security.models import User

    def compute(user_id: int):
        with app.app_context(), app.test_request_context():
            user = db.session.get(User, user_id)
            p = authz.principal(user)
            return {"depths": dict(p.depths), "named": set(p.named), "is_admin": p.is_admin,
                    "fields": {t: p.fields(t) for t in ("account", "contact", "lead")}}
    return compute


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)
