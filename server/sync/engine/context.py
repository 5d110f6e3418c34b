"""What the engine knows about one mailbox for one run (``MailboxRun``), loaded once: who owns
what it tracks and whose privileges tracking runs with (a queue's mailbox: the queue's owner,
or a member of its owning team who may track for it), the addresses and lists the rules
use, the attachment limit, and the open connector.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from server.crm.activities import Email
from server.mailkeys import normalize_address
from server.crm.models import Organization, Queue
from server.db import db
from server.security import authz
from server.security.authz import Principal
from server.security.models import Role, Team, User, user_role
from server.sync.connectors.base import Folder
from server.sync.mail.decision import OwnerKind
from server.sync.models import Mailbox, TrackingBlock

__all__ = ["MailboxRun"]

_org_cache: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())


def _org_addresses() -> frozenset[str]:
    """Every mailbox's address, normalized. Each run reads them all; normalizing 10,000
    (IDNA included) cost a quarter second per run, so the last result is kept and reused
    while the stored addresses are the same."""
    global _org_cache
    raw = tuple(db.session.execute(select(Mailbox.email_address).order_by(Mailbox.id)).scalars())
    cached = _org_cache
    if raw != cached[0]:
        cached = (raw, frozenset(filter(None, (normalize_address(a) for a in raw))))
        _org_cache = cached
    return cached[1]


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
    org_addresses: frozenset[str]
    blocklist: frozenset[str]
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

    @classmethod
    def load(cls, mailbox: Mailbox, connector: Any = None, *,
             org_addresses: frozenset[str] | None = None,
             blocklist: frozenset[str] | None = None) -> MailboxRun:
        org = db.session.get(Organization, 1)
        if org_addresses is None:
            org_addresses = _org_addresses()
        if blocklist is None:
            blocklist = frozenset(db.session.scalars(select(TrackingBlock.pattern)))
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
                   org_addresses=org_addresses, blocklist=blocklist,
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
