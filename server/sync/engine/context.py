"""What the engine knows about one mailbox for one run (``MailboxRun``), loaded once: who owns
what it tracks and whose privileges tracking runs with (a queue's mailbox: the queue's owner,
or a member of its owning team who may track for it), the addresses and lists the rules
use, the attachment limit, and the open connector.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from server.crm.activities import Email
from server.mailkeys import normalize_address
from server.crm.models import Organization, Queue
from server.db import cached_statement, db, in_values
from server.security import authz
from server.security.authz import Principal
from server.security.models import Role, Team, User, user_role
from server.sync.connectors.base import Folder
from server.sync.engine.alerts import MailboxAlerts
from server.sync.mail.decision import OwnerKind
from server.sync.models import Mailbox, TrackingBlock

__all__ = ["MailboxRun", "OrgAddresses"]

class OrgAddresses:
    """Which addresses belong to the organization's own mailboxes, looked up as the
    messages of a run name them (``lookup``: one indexed query for a wave's addresses) and
    remembered for the run. An idle run looks up none; a run never reads every mailbox's
    address (that grew with the mailbox count: 100,000 of them on every run)."""

    def __init__(self) -> None:
        self.known: dict[str, bool] = {}

    def lookup(self, addresses: Iterable[str]) -> None:
        """Find out, in one query, which of ``addresses`` not seen yet are mailboxes'."""
        wanted = {key: a for a in addresses
                  if a and (key := a.strip().lower()) and key not in self.known}
        if not wanted:
            return
        normal = {key: normalize_address(key) or key for key in wanted}
        query = cached_statement(("mailbox addresses",), lambda: select(
            Mailbox.email_address).where(in_values(Mailbox.email_address, "addresses")),
            prepared=True)
        found = {normalize_address(a) or a for a in db.session.scalars(
            query, {"addresses": sorted(set(normal.values()) | set(normal))})}
        for key, value in normal.items():
            self.known[key] = value in found or key in found

    def among(self, addresses: Iterable[str]) -> frozenset[str]:
        """Those of ``addresses`` (lower-cased) that are mailboxes' addresses."""
        addresses = [a.strip().lower() for a in addresses if a and a.strip()]
        self.lookup(addresses)
        return frozenset(a for a in addresses if self.known.get(a))

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and bool(self.among([address]))


@dataclass
class MailboxRun:
    """What the engine needs about one mailbox for one run, loaded once: who owns what it
    tracks, whose privileges tracking runs with, the addresses and lists the rules use, and
    the open connector (for writing the tracked category back)."""

    mailbox: Mailbox
    org: Organization
    owner: User | Team | None  # owner of tracked activities
    actor: Principal | None  # whose privileges tracking uses; None: see ``actor_problem``
    owner_kind: OwnerKind
    owner_user_id: int | None  # the user whose track requests count
    queue: Queue | None
    owner_addresses: frozenset[str]
    org_addresses: OrgAddresses
    alerts: MailboxAlerts
    process_after: datetime | None
    attachment_limit: int
    connector: Any = None
    actor_problem: str | None = None
    keyword_queue: list[tuple[Folder, str]] = field(default_factory=list)
    forward_runs: dict[int, MailboxRun] = field(default_factory=dict)
    # folder key -> when this run's engine last visited the folder before (None: never);
    # a folder missing here (a retry, a test) measures latency from arrival.
    folder_visits: dict[str, datetime | None] = field(default_factory=dict)
    # Set by the engine while it reads a folder header first: (folder, refs) -> {ref: the
    # whole message}, read when the connector is free (absent: expunged meanwhile).
    read_whole: Callable[[Folder, list[str]], dict[str, bytes]] | None = None
    # The tracking blocklist, read when a message is first decided (``blocklist``).
    loaded_blocklist: frozenset[str] | None = None

    @property
    def blocklist(self) -> frozenset[str]:
        if self.loaded_blocklist is None:
            self.loaded_blocklist = frozenset(db.session.scalars(select(TrackingBlock.pattern)))
        return self.loaded_blocklist

    @classmethod
    def load(cls, mailbox: Mailbox, connector: Any = None, *,
             org_addresses: OrgAddresses | None = None,
             blocklist: frozenset[str] | None = None,
             open_alerts: MailboxAlerts | None = None) -> MailboxRun:
        org = db.session.get(Organization, 1)
        profile = mailbox.server_profile
        limit = org.attachment_max_bytes
        if profile is not None and profile.attachment_max_bytes is not None:
            limit = min(limit, profile.attachment_max_bytes)
        queue = mailbox.queue if mailbox.queue_id else None
        owner, actor, problem = _owner_and_actor(mailbox, queue)
        addresses = {normalize_address(mailbox.email_address)}
        if mailbox.user is not None:
            addresses.add(normalize_address(mailbox.user.email))
        if queue is not None and queue.email:
            addresses.add(normalize_address(queue.email))
        return cls(mailbox=mailbox, org=org, owner=owner, actor=actor,
                   owner_kind=OwnerKind.QUEUE if queue is not None else OwnerKind.USER,
                   owner_user_id=mailbox.user_id, queue=queue,
                   owner_addresses=frozenset(a for a in addresses if a),
                   org_addresses=org_addresses or OrgAddresses(),
                   alerts=open_alerts or MailboxAlerts(mailbox), loaded_blocklist=blocklist,
                   process_after=mailbox.process_emails_after or (
                       profile.process_emails_after if profile else None),
                   attachment_limit=limit, connector=connector, actor_problem=problem)


def _can_track_for(p: Principal, owner: User | Team) -> bool:
    if not p.has("track_email"):
        return False
    if isinstance(owner, Team):
        return authz.can_create(p, Email, owner.business_unit_id, owner_team_id=owner.id)
    return authz.can_create(p, Email, owner.business_unit_id, owner.id)


def _owner_and_actor(mailbox: Mailbox, queue: Queue | None
                     ) -> tuple[User | Team | None, Principal | None, str | None]:
    """The owner of what the mailbox tracks and the user whose privileges tracking uses."""
    if queue is not None:
        owner = queue.owner_user or queue.owner_team
        if owner is None:
            return None, None, f'The queue "{queue.name}" has no owner.'
        candidates = [owner] if isinstance(owner, User) else sorted(
            (m for m in owner.members if m.is_active), key=lambda m: m.id)
        for user in candidates:
            if user.is_active and _can_track_for(authz.principal(user), owner):
                return owner, authz.principal(user), None
        admin = _an_administrator()
        if admin is not None:
            return owner, authz.principal(admin), None
        return owner, None, (f'Nobody who may track email for "{getattr(owner, "name", "")}" '
                             "was found (the queue's owner or a member of its owning team).")
    user = mailbox.user
    if user is None:
        return None, None, "This mailbox belongs to no user or queue."
    if not user.is_active:
        return user, None, f"{user.full_name} is disabled in Regarding."
    p = authz.principal(user)
    if not p.has("track_email"):
        return user, None, (f'{user.full_name} does not have the "Track email in the CRM" '
                            "privilege.")
    return user, p, None


def _an_administrator() -> User | None:
    return db.session.scalar(
        select(User).join(user_role, user_role.c.user_id == User.id)
        .join(Role, Role.id == user_role.c.role_id)
        .where(Role.is_builtin.is_(True), Role.name == "System Administrator",
               User.is_active.is_(True)).order_by(User.id).limit(1))
