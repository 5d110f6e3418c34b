"""A user connects their own Exchange Online mailbox for server-side sync from the Outlook
add-in: the pane's Office SSO token is exchanged on behalf of the user
(``oauth.exchange_on_behalf_of``: delegated Mail.ReadWrite and Mail.Send through the
mailbox's Microsoft Graph server profile), the refresh token is kept on the mailbox, and
the mailbox is tested and enabled as an administrator's Test & Enable would.

The rules:

* only one's own mailbox: the mailbox the CRM keeps for the signed-in user, whose address is
  the user's own (the delegated token reaches that mailbox and no other); no mailbox id is
  ever taken from the request;
* the mailbox must exist and be writable by the user (an administrator sets it up, or the
  user may create mailboxes for themselves), and read mail through a Graph profile;
* approval as for administrators: where the organization requires approved addresses, the
  mailbox stays disabled until someone with ``approve_email_addresses`` approves it;
* a pane token (no SSO) can show the state but cannot connect: on-behalf-of needs the
  user's Microsoft token.

Callers commit.
"""
from __future__ import annotations

from sqlalchemy import select

from server.i18n import N_
from server.mailkeys import normalize_address
from server.db import db
from server.errors import Forbidden, Invalid, ServiceError
from server.security import authz
from server.security.authz import Principal
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.engine import oauth
from server.sync.connectors.base import ConnectorError
from server.sync.models import Alert, Mailbox

SELF_CONNECT_PROTOCOL = "graph"


class ConnectFailed(ServiceError):
    """Microsoft Entra ID did not grant access to the mailbox (the message says why)."""
    status, code = 409, "connect_failed"


def _own(p: Principal) -> Mailbox | None:
    """The signed-in user's mailbox (never another's)."""
    mailbox = mailbox_admin.my_mailbox(p)
    if mailbox is None or mailbox.user_id != p.user_id:
        return None
    return mailbox


def _why_not(p: Principal, mailbox: Mailbox | None) -> str | None:
    """Why this user cannot connect this mailbox from the add-in, or None."""
    if mailbox is None:
        return N_("The CRM has no mailbox for you yet: ask an administrator to add yours "
                  "(Email tracking → Mailboxes).")
    if normalize_address(mailbox.email_address) != normalize_address(p.user.email or ""):
        return N_("Your CRM mailbox is %(mailbox)s, not your own address %(address)s: only "
                  "your own mailbox can be connected from Outlook.",
                  mailbox=mailbox.email_address, address=p.user.email)
    if not authz.can(p, "write", mailbox):
        return N_("You may not change your mailbox's settings: ask an administrator.")
    profile = mailbox.server_profile
    if profile is None or profile.incoming_protocol != SELF_CONNECT_PROTOCOL:
        return N_("Your mailbox is not read through Exchange Online (Microsoft Graph): an "
                  "administrator connects it.")
    return None


def state(p: Principal, *, sso: bool) -> dict:
    """What the pane shows: the user's mailbox, whether it is connected, approved and
    enabled, its last sync and open alerts, and whether (or why not) it can be connected
    now (``sso``: the request came with an Office SSO token)."""
    mailbox = _own(p)
    why = _why_not(p, mailbox)
    if why is None and not sso:
        why = N_("Connecting your mailbox needs Office sign-in (single sign-on) in Outlook.")
    out: dict = {"can_connect": why is None, "why_not": why, "mailbox": None}
    if mailbox is None:
        return out
    alerts = db.session.scalars(select(Alert).where(
        Alert.mailbox_id == mailbox.id, Alert.acknowledged_on.is_(None))
        .order_by(Alert.created_on.desc()).limit(5)).all()
    required = mailbox_admin.approval_required(mailbox)
    out["mailbox"] = {
        "address": mailbox.email_address,
        "profile": mailbox.server_profile.name if mailbox.server_profile else None,
        "connected": bool(mailbox.oauth_refresh_token),
        "approval_required": required,
        "approved": bool(mailbox.email_approved or not required),
        "can_approve": bool(required and not mailbox.email_approved
                            and p.has("approve_email_addresses")),
        "enabled": mailbox.enabled,
        "incoming_status": mailbox.incoming_status,
        "outgoing_status": mailbox.outgoing_status,
        "disabled_reason": None if mailbox.enabled else mailbox.disabled_reason,
        "last_sync_on": _iso(mailbox.last_sync_on),
        "last_success_on": _iso(mailbox.last_success_on),
        "alerts": [{"severity": a.severity, "message": a.message,
                    "created_on": _iso(a.created_on)} for a in alerts],
    }
    return out


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def connect(p: Principal, user_assertion: str | None) -> Mailbox:
    """Exchange the user's SSO token for delegated access to their own mailbox and test and
    enable it (enabled only when its address is approved, as by an administrator)."""
    mailbox = _own(p)
    why = _why_not(p, mailbox)
    if why is not None:
        raise Forbidden(why)
    if not user_assertion:
        raise Invalid(N_("Connecting your mailbox needs Office sign-in (single sign-on) in "
                         "Outlook; the sign-in dialog's token cannot grant Microsoft access."))
    authz.require(p, "write", mailbox)
    try:
        oauth.exchange_on_behalf_of(mailbox, user_assertion)
    except ConnectorError as exc:
        raise ConnectFailed(exc.message) from None
    mailbox_admin.test_and_enable(p, mailbox)
    db.session.flush()
    return mailbox


def approve(p: Principal) -> Mailbox:
    """Approve one's own address (only with ``approve_email_addresses``, as an administrator
    would) and enable the mailbox when it is connected and its tests pass."""
    mailbox = _own(p)
    if mailbox is None:
        raise Forbidden(_why_not(p, None))
    mailbox_admin.approve(p, mailbox)
    if mailbox.oauth_refresh_token and not mailbox.enabled:
        mailbox_admin.test_and_enable(p, mailbox)
    return mailbox


def disconnect(p: Principal) -> Mailbox:
    """Forget the delegated access and stop syncing the mailbox."""
    mailbox = _own(p)
    if mailbox is None:
        raise Forbidden(_why_not(p, None))
    authz.require(p, "write", mailbox)
    if not mailbox.oauth_refresh_token:
        raise Invalid(N_("Your mailbox is not connected from Outlook."))
    mailbox.oauth_refresh_token = None
    mailbox.enabled = False
    mailbox.next_sync_on = None
    mailbox.disabled_reason = N_("Disconnected from Outlook by its user.")
    mailbox.incoming_status = mailbox.outgoing_status = "not_run"
    db.session.flush()
    return mailbox
