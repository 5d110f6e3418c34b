"""Idle visits in batches: a worker's due mailboxes that have nothing new are visited
together, with a few statements for the whole batch instead of a run's ten each (issue 17,
goal 5: at 100,000 mailboxes per-statement cost is what an idle visit is made of).

``probe(mailbox_ids)`` loads the batch in one statement (each mailbox with its server
profile, the organization, and the open alerts an idle run would clear and the folder
rules, counted), their folder states in one, their folder rules in one when some have any.
A mailbox is *idle* when a run of it now would find nothing and change nothing but its
outcome:

* it is synced by the engine (``run.why_not_synced``), is no forward mailbox, does not
  sync appointments, contacts and tasks on the server (that opens a connection), has no
  backlog, ran before, and none of the alerts an idle run clears is open;
* its connector ``Probes``: Maildir (opening it and listing its folders reads directory
  times), IMAP (one sign-in and one listing whose STATUS items say whether a folder
  changed: no folder is opened), POP3 (one sign-in and one UIDL listing), Microsoft Graph
  (one ``$batch``: the listing and each folder's delta link for one change at most) or EWS
  (the listing and a SyncFolderItems for one change per folder); its folders are planned
  as a run plans them (``plan_folders``, with the organization's Sent setting and the
  folder rules) with nothing to note, and every evaluated folder has a state under the
  same name and role whose cursor the connector says is ``unchanged``. (A run that tracked
  mail moved its cursors past the "Tracked to Regarding" category it wrote, where the
  connector can tell nothing else changed meanwhile: ``Probes.past_own_writes``, IMAP with
  CONDSTORE, Maildir, Graph, EWS. On Maildir the category's renames change the directory
  times, so one more run lists the folder, reads no file and stamps the cursor.) Where the server hands out a new sync state at each look (Graph,
  EWS), that state is the folder's cursor from then on (``Probes.cursor_after``), written
  with the visit;
* its Graph change-notification subscriptions need no upkeep (``graph_push.kept_up``): a
  run keeps them up when it closes its connector, an idle visit does not.

A server probed gets ``PROBE_TIMEOUT`` seconds at most (a run waits the profile's whole
timeout); one that cannot be reached is not tried again for the rest of the batch: its
mailboxes get their runs, which say what is wrong.

Every other mailbox (new mail, "don't know", a connector that cannot tell, an error while
probing) gets the full run, unchanged, but for one whose server refused the probe's sign-in
(an error of severity ``auth``): its run takes that refusal as its own
(``accounts.Refused``) rather than sign in again with the same credentials, and so does
every later mailbox of the batch that signs in with them (a profile's service account:
``service_accounts``), unprobed. "Email cannot be tracked" (the owner lost a privilege)
is not looked at here: nothing is tracked when nothing is new, and the first run that
finds mail raises it before it tracks anything.

``record(owner, visits)`` writes what ``outcome.succeeded`` and the lease's release write
(``outcome.success_values``: the next run, the interval lengthened, the failure count
reset; the lease given back), one row update per distinct interval, guarded by the lease
owner (a lease lost meanwhile is left alone, and nothing of that visit is written), the
folders' visit times in one update (and the new cursors Graph or EWS gave, in one more)
and the run rows (``SyncRun``, which the dashboard counts) in one insert; one commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import joinedload

from server.db import cached_statement, db, utcnow
from server.sync.connectors import incoming
from server.sync.connectors.base import ConnectorError, Probes, Subscriptions
from server.sync.engine.accounts import Refused
from server.sync.engine.folders import plan_folders
from server.sync.engine.outcome import success_values
from server.sync.engine.quarantine import safe_detail
from server.sync.models import Alert, FolderRule, FolderState, Mailbox, SyncRun

log = logging.getLogger(__name__)

__all__ = ["CLEARED", "Probed", "Visit", "probe", "record"]

# The alerts a run that finds nothing closes: a mailbox with one of them open gets a run.
CLEARED = ("sync_failed", "cannot_track", "folder_failed", "message_unreadable")

PROBE_TIMEOUT = 10.0  # seconds a server gets to answer a probe
# Errors that say the server (not the mailbox's sign-in) cannot be reached now.
UNREACHABLE = frozenset({"timeout", "connection_refused", "host_not_found", "connection_lost",
                         "tls_failed"})


@dataclass(frozen=True)
class Visit:
    """An idle mailbox's outcome, ready to be written."""

    mailbox_id: int
    values: dict  # the mailbox's columns (``outcome.success_values``)
    state_ids: tuple[int, ...]  # its evaluated folders' states
    cursors: tuple[tuple[int, str | None], ...] = ()  # (state id, new cursor) where one moved


@dataclass
class Probed:
    idle: list[Visit] = field(default_factory=list)
    full: list[int] = field(default_factory=list)  # mailboxes that need a full run
    refused: dict[int, Refused] = field(default_factory=dict)  # of ``full``: sign-in refused
    # The batch's mailboxes and organization as loaded (held: the session holds them weakly).
    mailboxes: dict[int, Mailbox] = field(default_factory=dict)
    org: object = None


def _batch_select():
    from server.crm.models import Organization
    cleared = select(func.count()).where(
        Alert.mailbox_id == Mailbox.id, Alert.acknowledged_on.is_(None),
        Alert.code.in_(CLEARED)).scalar_subquery()
    rules = select(func.count()).where(FolderRule.mailbox_id == Mailbox.id).scalar_subquery()
    return (select(Mailbox, Organization, cleared.label("cleared"), rules.label("rules"))
            .outerjoin(Organization, Organization.id == 1)
            .where(Mailbox.id.in_(bindparam("ids", expanding=True)))
            .options(joinedload(Mailbox.server_profile)))


def _states_select():
    return select(FolderState).where(FolderState.mailbox_id.in_(bindparam("ids", expanding=True)))


def probe(mailbox_ids: list[int]) -> Probed:
    """Which of ``mailbox_ids`` are idle (their outcomes computed) and which need a run.
    Reads only; writes nothing (whatever planning the folders changed is undone)."""
    from server.sync.engine.run import why_not_synced
    out = Probed()
    if not mailbox_ids:
        return out
    ids = sorted(set(mailbox_ids))
    rows = db.session.execute(cached_statement(("idle batch",), _batch_select),
                              {"ids": ids}).all()
    candidates = {}
    for mailbox, org, cleared, rules in rows:
        out.mailboxes[mailbox.id], out.org = mailbox, org
        if (why_not_synced(mailbox, org) is None and not mailbox.is_forward_mailbox
                and not mailbox.syncs_items and not mailbox.backlog
                and mailbox.last_success_on is not None and not cleared
                and mailbox.server_profile is not None and _probes(mailbox.server_profile)):
            candidates[mailbox.id] = rules
    states: dict[int, dict[str, FolderState]] = {}
    rules: dict[int, list[FolderRule]] = {}
    if candidates:
        for state in db.session.scalars(cached_statement(("idle states",), _states_select),
                                        {"ids": sorted(candidates)}):
            states.setdefault(state.mailbox_id, {})[state.folder_key] = state
        with_rules = sorted(i for i, n in candidates.items() if n)
        if with_rules:
            for rule in db.session.scalars(select(FolderRule).where(
                    FolderRule.mailbox_id.in_(with_rules)).order_by(FolderRule.id)):
                rules.setdefault(rule.mailbox_id, []).append(rule)
    now, touched, unreachable, turned_away = utcnow(), False, set(), {}
    found: dict[int, tuple[tuple[int, ...], dict[int, str | None]]] = {}
    for mailbox_id in ids:
        if mailbox_id in candidates:
            seen, changed = _unchanged(out.mailboxes[mailbox_id], out.org,
                                       states.get(mailbox_id, {}), rules.get(mailbox_id, []),
                                       unreachable, turned_away, out.refused)
            touched |= changed
            if seen is not None:
                found[mailbox_id] = seen
    for mailbox_id in _upkeep_due(found, out.mailboxes, states):
        del found[mailbox_id]
    for mailbox_id in ids:
        if mailbox_id not in found:
            out.full.append(mailbox_id)
            continue
        state_ids, moved = found[mailbox_id]
        out.idle.append(Visit(mailbox_id, success_values(out.mailboxes[mailbox_id], now),
                              state_ids, tuple(moved.items())))
    if touched:  # planning changed a rule or wrote an alert: the mailbox's run does it
        db.session.rollback()
    return out


def _probes(profile) -> bool:
    try:
        return issubclass(incoming(profile.incoming_protocol), Probes)
    except ConnectorError:  # no such protocol: the run says so
        return False


def _upkeep_due(found: dict, mailboxes: dict[int, Mailbox],
                states: dict[int, dict[str, FolderState]]) -> set[int]:
    """Of the idle mailboxes ``found``, those whose change subscriptions a run must keep up
    (Graph's: ``graph_push.kept_up``, one statement for the batch)."""
    from server.sync.workers import graph_push
    keys = {}
    for mailbox_id, (state_ids, _) in found.items():
        if issubclass(incoming(mailboxes[mailbox_id].server_profile.incoming_protocol),
                      Subscriptions):
            keys[mailbox_id] = {s.folder_key for s in states[mailbox_id].values()
                                if s.id in state_ids}
    return set(keys) - graph_push.kept_up(keys) if keys else set()


def _unchanged(mailbox: Mailbox, org, states: dict[str, FolderState], rules: list[FolderRule],
               unreachable: set[str], turned_away: dict[tuple, Refused],
               refused: dict[int, Refused]
               ) -> tuple[tuple[tuple[int, ...], dict[int, str | None]] | None, bool]:
    """((the states of the mailbox's evaluated folders, the new cursors of those whose
    cursor moved (``Probes.cursor_after``)) when none has anything new, else None; whether
    planning its folders changed anything in the session). ``unreachable``:
    the servers this batch could not reach (one that fails here is added); ``turned_away``:
    the sign-ins (server, login, password) this batch had refused, which are not tried again
    (a profile's service account, which all its mailboxes share); ``refused``: the mailbox is
    added when its server refuses the sign-in."""
    from server.sync.engine.accounts import account_for
    session = db.session()
    changed, where, account, login = False, None, None, None
    try:
        account = account_for(mailbox, "incoming")
        account = replace(account, timeout=min(account.timeout or PROBE_TIMEOUT, PROBE_TIMEOUT))
        where = f"{account.host}:{account.port}" if account.host else None
        if where is not None and where in unreachable:
            return None, changed
        if account.password:
            login = (where, account.username, account.password)
        if login in turned_away:  # refused a moment ago: the run says so, signing in to nothing
            refused[mailbox.id] = replace(turned_away[login], account=account)
            return None, changed
        with incoming(mailbox.server_profile.incoming_protocol)(account) as connector:
            connector.expect({key: state.cursor for key, state in states.items()})
            folders = connector.list_folders()
            with session.no_autoflush:  # planning may change a rule, as a run does
                plan = plan_folders(mailbox, folders, rules, track_sent=org.track_sent_items)
            # (``dirty`` holds a rule set to the value it had: only a net change counts.)
            changed = bool(plan.notes or session.new) or any(
                session.is_modified(obj) for obj in session.dirty)
            if changed or not plan.evaluate:
                return None, changed
            found, moved = [], {}
            for info in plan.evaluate:
                state = states.get(info.key)
                if (state is None or state.folder_name != info.name[:500]
                        or state.role != info.role.value
                        or not connector.unchanged(info.folder, state.cursor)):
                    return None, changed
                found.append(state.id)
                cursor = connector.cursor_after(info.folder, state.cursor)
                if cursor != state.cursor:
                    moved[state.id] = cursor
            return (tuple(found), moved), changed
    except ConnectorError as exc:
        if where is not None and exc.code in UNREACHABLE:
            unreachable.add(where)
        elif exc.severity == "auth" and account is not None:
            refused[mailbox.id] = Refused(exc, account)
            if login is not None:
                turned_away[login] = refused[mailbox.id]
        return None, changed  # the run says what is wrong
    except Exception as exc:  # a bug in probing must not keep the mailbox from its run
        log.warning("mailbox %s: idle probe failed (%s); it gets a full run", mailbox.id,
                    safe_detail(exc))
        return None, True


def record(owner: str, visits: list[Visit], *, worker: str | None = None) -> set[int]:
    """Write the idle visits whose lease ``owner`` still holds: the mailboxes' outcomes
    with their leases given back, their folders' visit times and their run rows; commits.
    Returns the mailbox ids written."""
    if not visits:
        return set()
    now = utcnow()
    owner = owner[:120]
    groups: dict[tuple, list[Visit]] = {}
    for visit in visits:
        groups.setdefault(tuple(sorted(visit.values.items())), []).append(visit)
    done: set[int] = set()
    table = Mailbox.__table__
    try:
        for key, group in groups.items():
            done.update(db.session.scalars(
                update(table).where(table.c.id.in_([v.mailbox_id for v in group]),
                                    table.c.lease_owner == owner)
                .values(**dict(key), lease_owner=None, lease_expires_on=None)
                .returning(table.c.id)))
        written = [v for v in visits if v.mailbox_id in done]
        states = FolderState.__table__
        moved = [{"state_id": i, "new_cursor": c} for v in written for i, c in v.cursors]
        movers = {m["state_id"] for m in moved}
        state_ids = [i for v in written for i in v.state_ids if i not in movers]
        if state_ids:
            db.session.execute(update(states).where(states.c.id.in_(state_ids))
                               .values(updated_on=now))
        if moved:
            db.session.execute(update(states).where(states.c.id == bindparam("state_id"))
                               .values(cursor=bindparam("new_cursor"), updated_on=now), moved)
        if written:
            db.session.execute(insert(SyncRun.__table__).values([dict(
                mailbox_id=v.mailbox_id, worker=(worker or owner)[:120], started_on=now,
                finished_on=now, fetched=0, tracked=0, skipped=0, failed=0)
                for v in written]))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return done
