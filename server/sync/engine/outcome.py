"""A run's outcome on the mailbox row: its status, its next run (sooner after a run that
tracked mail, later after idle ones; backing off after failures, and turned off after too
many or a refused password, with an alert; outgoing email or the item sync turned off
alone when their server refuses the sign-in; waiting, none of it turned off, while the
profile's service account is refused: ``service_accounts``), and the worker's lease given
back in the same row update (``give_back_with_outcome``: one write per run, not two)."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import inspect
from sqlalchemy.orm.attributes import set_committed_value

from server.db import db, utcnow
from server.i18n import N_
from server.sync import leases
from server.sync.connectors.base import ConnectorError
from server.sync.engine import alerts, service_accounts
from server.sync.models import Mailbox

# ``result`` below is the run's ``engine.run.SyncResult`` (not imported: run imports this).
DEFAULTS = {
    "REGARDING_SYNC_MAX_FAILURES": 10,
    "REGARDING_SYNC_RETRY_SECONDS": 300,
    "REGARDING_SYNC_INTERVAL_SECONDS": 300,
    "REGARDING_SYNC_BUSY_INTERVAL_SECONDS": 120,
    "REGARDING_SYNC_IDLE_INTERVAL_SECONDS": 720,
}

__all__ = ["acts_failed", "failed", "give_back_with_outcome", "send_failed", "success_values",
           "succeeded"]

FIX_SIGN_IN = N_("Correct the user name and password (or the sign-in) of this mailbox or of "
                 "its email server profile, then test and enable the mailbox again.")


def _setting(name: str) -> int:
    return int(current_app.config.get(name, DEFAULTS[name]))


def _next_interval(mailbox: Mailbox, tracked: int, new: int) -> int:
    base = _setting("REGARDING_SYNC_INTERVAL_SECONDS")
    busy = _setting("REGARDING_SYNC_BUSY_INTERVAL_SECONDS")
    idle = _setting("REGARDING_SYNC_IDLE_INTERVAL_SECONDS")
    if tracked:
        return busy
    if new:
        return base
    step = max(1, (idle - base) // 3)  # three idle runs in a row reach the idle interval
    current = mailbox.sync_interval_seconds or base
    return min(idle, max(current, base) + step) if idle > base else base


def success_values(mailbox: Mailbox, now, *, tracked: int = 0, new: int = 0,
                   backlog: int = 0, more: bool = False) -> dict:
    """The columns a successful run writes on its mailbox (``new``: mail fetched that
    was not seen before; ``backlog``: folders left with mail). A run that found nothing
    (``engine.idle``'s visits) writes them with the defaults."""
    interval = _next_interval(mailbox, tracked, new)
    return dict(last_sync_on=now, last_success_on=now, consecutive_failures=0,
                incoming_status="success", incoming_message=None, backlog=backlog,
                sync_interval_seconds=interval,
                next_sync_on=now if more else now + timedelta(seconds=interval))


def succeeded(mailbox: Mailbox, known: alerts.MailboxAlerts, result) -> None:
    values = success_values(mailbox, utcnow(), tracked=result.tracked,
                            new=result.fetched - result.seen,
                            backlog=sum(1 for f in result.folders if f.more), more=result.more)
    for key, value in values.items():
        setattr(mailbox, key, value)
    result.next_sync_on = mailbox.next_sync_on
    known.clear("sync_failed")


def failed(mailbox: Mailbox, result, code: str, message: str, severity: str,
            retry_after: float | None) -> None:
    now = utcnow()
    if severity == "auth":  # the profile's service account, refused: held, the mailbox waits
        held = service_accounts.hold(mailbox.server_profile, "incoming",
                                     ConnectorError(code, message, severity))
        code, message, severity = held.code, held.message, held.severity
    result.status, result.error_code, result.reason = "failure", code, message
    mailbox.last_sync_on = now
    mailbox.incoming_status, mailbox.incoming_message = "failure", message
    address = mailbox.email_address
    if severity == service_accounts.HELD:  # the profile's alert says why; no failure counted
        mailbox.next_sync_on = now + timedelta(seconds=_setting("REGARDING_SYNC_RETRY_SECONDS"))
        result.next_sync_on = mailbox.next_sync_on
        return
    if severity in ("auth", "fatal"):
        fix = FIX_SIGN_IN if severity == "auth" else \
            N_("Fix the problem, then test and enable the mailbox again.")
        _disable(mailbox, result, f"{message} {fix}")
        alerts.raise_alert("error", "auth_failed" if severity == "auth" else "sync_fatal",
                           N_("Synchronization of %(address)s was turned off: %(problem)s") % {
                               "address": address, "problem": f"{message} {fix}"}, mailbox)
        return
    mailbox.consecutive_failures = (mailbox.consecutive_failures or 0) + 1
    failures, most = mailbox.consecutive_failures, _setting("REGARDING_SYNC_MAX_FAILURES")
    if failures >= most:
        _disable(mailbox, result, f"Synchronization failed {failures} times in a row: {message}")
        alerts.raise_alert("error", "sync_failed",
                           N_("Synchronization of %(address)s failed %(failures)s times in a row "
                              "and was turned off: %(problem)s When the server is reachable "
                              "again, test and enable the mailbox.") % {
                                  "address": address, "failures": failures, "problem": message},
                           mailbox)
        return
    delay = max(_setting("REGARDING_SYNC_RETRY_SECONDS"), int(retry_after or 0))
    mailbox.next_sync_on = now + timedelta(seconds=delay)
    result.next_sync_on = mailbox.next_sync_on
    alerts.raise_alert("warning", "sync_failed",
                       N_("Synchronization of %(address)s failed: %(problem)s Attempt "
                          "%(failures)s of %(most)s; the next one is at %(next)s UTC.") % {
                              "address": address, "problem": message, "failures": failures,
                              "most": most, "next": f"{mailbox.next_sync_on:%Y-%m-%d %H:%M}"},
                       mailbox)


def send_failed(mailbox: Mailbox, error) -> None:
    """The mailbox's outgoing email could not be sent (``error``: the sender's
    ``ConnectorError``): its outgoing status says why, with an alert. A refused sign-in
    (severity ``auth``) turns outgoing email off until someone corrects it and tests the
    mailbox again, as a refused password turns the mailbox off: each later try would be
    one more failed sign-in at the server, and servers lock accounts out after a few
    (docs/mail-servers.md). Its emails wait, no attempt used up; mail is still read."""
    error = service_accounts.hold(mailbox.server_profile, "outgoing", error)
    mailbox.outgoing_status, mailbox.outgoing_message = "failure", error.message
    _part_failed(mailbox, error, "send_failed", "outgoing_enabled", N_(
        "Outgoing email of %(address)s was turned off: %(problem)s"), N_(
        "Outgoing email of %(address)s could not be sent: %(problem)s It is tried again on "
        "the next run."))


def acts_failed(mailbox: Mailbox, error) -> None:
    """The mailbox's appointments, contacts and tasks could not be synced (``error``: the
    item store's ``ConnectorError``; their status says why already), with an alert. A
    refused sign-in (a CalDAV/CardDAV profile's password changed, Exchange's calendar
    consent taken back) turns them off until someone corrects it and tests the mailbox
    again, as it turns outgoing email off. Mail is still read and sent."""
    error = service_accounts.hold(mailbox.items_server_profile or mailbox.server_profile,
                                  "incoming", error)
    if error.severity in ("auth", service_accounts.HELD):
        mailbox.acts_status = "failure"
        mailbox.acts_message = error.message if error.severity == service_accounts.HELD \
            else f"{error.message} {FIX_SIGN_IN}"
    _part_failed(mailbox, error, "acts_failed", "acts_enabled", N_(
        "Appointments, contacts and tasks of %(address)s were turned off: %(problem)s"), N_(
        "Appointments, contacts and tasks of %(address)s could not be synchronized: "
        "%(problem)s They are tried again on the next run."))


def _part_failed(mailbox: Mailbox, error, code: str, switch: str, turned_off: str,
                 again: str) -> None:
    """A part of the mailbox's sync failed: a refused sign-in (severity ``auth``) turns it
    off (the column ``switch``) with an error alert; a held service account (``HELD``) leaves
    it waiting, the profile's alert saying why; anything else is tried again at the next
    run, with a warning."""
    values = {"address": mailbox.email_address, "problem": error.message}
    if error.severity == service_accounts.HELD:
        return
    if error.severity == "auth":
        setattr(mailbox, switch, False)
        alerts.raise_alert("error", code, turned_off % {
            **values, "problem": f"{error.message} {FIX_SIGN_IN}"}, mailbox)
    else:
        alerts.raise_alert("warning", code, again % values, mailbox)


def _disable(mailbox: Mailbox, result, reason: str) -> None:
    mailbox.enabled = False
    mailbox.disabled_reason = reason
    mailbox.next_sync_on = None
    result.disabled = True
    result.next_sync_on = None


def give_back_with_outcome(mailbox: Mailbox, owner: str) -> bool:
    """The run's outcome (the mailbox's changed columns) and the lease given back in one
    row update, when ``owner`` still holds the lease; False otherwise (the outcome is
    then written alone, with the run)."""
    state = inspect(mailbox)
    changed = {prop.key: state.attrs[prop.key].value for prop in state.mapper.column_attrs
               if state.attrs[prop.key].history.added}
    with db.session.no_autoflush:  # the changed columns go in this update, not a flush
        if not leases.give_back_row(Mailbox, owner, mailbox.id, **changed):
            return False
    changed.update(lease_owner=None, lease_expires_on=None)
    for key, value in changed.items():  # written: nothing left for the session to flush
        set_committed_value(mailbox, key, value)
    return True
