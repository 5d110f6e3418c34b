"""A profile's service account whose sign-in a server refused: held for every mailbox of the
profile at once, not tried again once per mailbox.

A profile whose mailboxes all sign in as one service account (``use_service_account`` with a
password, and a login that is the same for each: a ``service_login`` form without
``{address}``) is refused alike for every one of them when that password stops working.
Servers count failed sign-ins and lock the account out after a few (docs/mail-servers.md);
a mailbox turned off by its own refusal would leave the next one to try, as many failed
sign-ins as the profile has mailboxes. So the first refusal is the profile's (``hold``):
kept on the profile (``EmailServerProfile.service_refusals``, per direction: the incoming
and the outgoing server may judge the same account differently) with an error alert, and
every later sign-in as that account in that direction stops before it reaches the server
(``check``, where the account is built: runs, idle probes, push watchers, Test & Enable,
sending and the item sync each build it there). The mailboxes are not turned off: they
wait (severity ``HELD``: no failure counted, no alert of their own, queued email keeps its
attempts) and go on by themselves once the profile's sign-in is changed or an
administrator asks for one more try (``release``).

A login with ``{address}`` in it (a Dovecot master user, ``sam@contoso.example*crm``) is
each mailbox's own: a refusal may be about that mailbox alone, and the mailbox is turned
off as with its own password.
"""
from __future__ import annotations

import logging

from server.db import utcnow
from server.i18n import N_
from server.sync.connectors.base import ConnectorError
from server.sync.engine import alerts
from server.sync.models import EmailServerProfile

log = logging.getLogger(__name__)

__all__ = ["HELD", "REFUSED", "check", "hold", "release", "shared"]

HELD = "held"  # the severity of a sign-in not tried: the mailbox waits
CODE = "service_refused"
# The errors that say the server refused the credentials themselves (IMAP, POP3, SMTP,
# CalDAV/CardDAV, EWS with a password); not "that mailbox is not yours" (impersonation,
# no such mailbox), which is one mailbox's.
REFUSED = frozenset({"auth_failed", "auth_required"})


def shared(profile: EmailServerProfile) -> bool:
    """Whether every mailbox of ``profile`` signs in with the same login and password."""
    form = (profile.settings or {}).get("service_login") or "{service}"
    return bool(profile.use_service_account) and profile.auth_method != "oauth2" \
        and "{address}" not in form


def check(profile: EmailServerProfile, direction: str) -> None:
    """Raise the ``HELD`` error when ``profile``'s service account was refused in
    ``direction`` (``incoming``: the mail server, or the item server of an item profile;
    ``outgoing``) and has not been changed or released since."""
    refusal = (profile.service_refusals or {}).get(direction)
    if refusal and shared(profile):
        raise ConnectorError(CODE, _said(profile, refusal), severity=HELD)


def hold(profile: EmailServerProfile | None, direction: str,
         error: ConnectorError) -> ConnectorError:
    """The error a mailbox's part (``direction``) takes for ``error``: when it is the server
    refusing ``profile``'s shared service account, the refusal is kept on the profile, with
    an error alert, and the ``HELD`` error returned (the mailbox waits rather than being
    turned off); any other error is returned as it is. The caller commits."""
    if profile is None or error.code not in REFUSED or not shared(profile):
        return error
    refusals = dict(profile.service_refusals or {})
    if direction not in refusals:
        refusals[direction] = {"on": utcnow().strftime("%Y-%m-%d %H:%M"),
                               "message": error.message}
        profile.service_refusals = refusals
        log.warning("server profile %s: the %s server refused the service account; its "
                    "mailboxes wait", profile.id, direction)
        alerts.raise_alert("error", _alert_code(profile), N_(
            "The server refused the service account %(login)s of the email server profile "
            "%(profile)s (%(problem)s). Its mailboxes wait and nothing signs in as it until "
            "its password is corrected in the profile, or an administrator tries it again "
            "there.") % {"login": profile.service_username, "profile": profile.name,
                         "problem": error.message})
    return ConnectorError(CODE, _said(profile, refusals[direction]), severity=HELD)


def release(profile: EmailServerProfile) -> bool:
    """Forget the profile's refusals (its sign-in changed, or an administrator asked for
    one more try) and close their alert; whether there were any. The caller commits."""
    if not profile.service_refusals:
        return False
    profile.service_refusals = None
    alerts.clear(_alert_code(profile))
    log.info("server profile %s: its service account is tried again", profile.id)
    return True


def _alert_code(profile: EmailServerProfile) -> str:
    return f"{CODE}:{profile.id}"


def _said(profile: EmailServerProfile, refusal: dict) -> str:
    return N_("The server refused the service account %(login)s of the email server profile "
              "%(profile)s on %(on)s UTC (%(problem)s): nothing signs in as it until its "
              "password is corrected in the profile, or an administrator tries it again "
              "there.") % {"login": profile.service_username, "profile": profile.name,
                           "on": refusal.get("on", "?"), "problem": refusal.get("message", "")}
