"""The add-in API's "my mailbox" endpoints (``/api/addin/mailbox``): the task pane shows the
signed-in user's own mailbox (connected, approved, enabled, last sync, alerts) and lets
them connect it for server-side sync with their Office SSO token (on-behalf-of), approve
their own address when they may, or disconnect it. Bearer JSON like the rest of
``/api/addin`` (same sign-in and ``use_outlook_addin`` check, no CSRF token); the rules are
``server.sync.admin.own_mailbox``'s.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from server.db import db
from server.security import authz
from server.sync.admin import own_mailbox
from server.web import csrf
from server.web.addin_api import _signed_in_with_addin_privilege
from server.web.languages import localize

bp = Blueprint("addin_mailbox", __name__, url_prefix="/api/addin/mailbox")
bp.before_request(_signed_in_with_addin_privilege)


def _state():
    """The mailbox's state, its sentences for people (why not, why disabled, alerts) in the
    pane's language."""
    p = authz.principal(g.api_user)
    state = own_mailbox.state(p, sso=g.get("addin_auth") == "sso")
    state["why_not"] = localize(state["why_not"]) or None
    box = state["mailbox"]
    if box is not None:
        box["disabled_reason"] = localize(box["disabled_reason"]) or None
        for alert in box["alerts"]:
            alert["message"] = localize(alert["message"])
    return jsonify(state)


@bp.get("")
def show():
    return _state()


@bp.post("/connect")
def connect():
    own_mailbox.connect(authz.principal(g.api_user), g.get("addin_sso_token"))
    db.session.commit()
    return _state()


@bp.post("/approve")
def approve():
    own_mailbox.approve(authz.principal(g.api_user))
    db.session.commit()
    return _state()


@bp.post("/disconnect")
def disconnect():
    own_mailbox.disconnect(authz.principal(g.api_user))
    db.session.commit()
    return _state()


def init_app(app) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
