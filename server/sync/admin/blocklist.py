"""The tracking blocklist: addresses and @domains whose email is never tracked. Seen by
holders of ``view_sync_dashboard``, changed by those who may write the organization. Callers
commit.
"""
from __future__ import annotations

import re

from sqlalchemy import select

from server.i18n import N_
from server.mailkeys import normalize_address
from server.db import db
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.security.authz import Principal
from server.security.privileges import Depth
from server.sync.models import TrackingBlock


_PATTERN = re.compile(r"^(@[a-z0-9.-]+\.[a-z0-9-]+|[^@\s]+@[a-z0-9.-]+\.[a-z0-9-]+)$")


def can_edit_blocklist(p: Principal) -> bool:
    return p.depth("organization", "write") > Depth.NONE


def list_blocks(p: Principal) -> list[TrackingBlock]:
    if not (p.has("view_sync_dashboard") or can_edit_blocklist(p)):
        raise Forbidden(N_("This needs the 'View the sync dashboard' privilege."))
    return list(db.session.scalars(select(TrackingBlock).order_by(TrackingBlock.pattern)))


def add_block(p: Principal, data: dict) -> TrackingBlock:
    if not can_edit_blocklist(p):
        raise Forbidden(N_("Changing the tracking blocklist needs write on the organization."))
    raw = (data.get("pattern") or "").strip().lower()[:320]
    if raw.startswith("@"):  # a domain: normalized as the domain of an address
        address = normalize_address("x" + raw)
        pattern = "@" + address.split("@", 1)[1] if address else raw
    else:
        pattern = normalize_address(raw) or raw
    if not _PATTERN.match(pattern or ""):
        raise Invalid(N_("Enter an address (someone@example.com) or a domain (@example.com)."),
                      {"pattern": N_("Enter an address or an @domain.")})
    if db.session.scalar(select(TrackingBlock.id).where(TrackingBlock.pattern == pattern)):
        raise Conflict(f"{pattern} is on the blocklist already.")
    block = TrackingBlock(pattern=pattern)
    db.session.add(block)
    db.session.flush()
    return block


def delete_block(p: Principal, block_id: int) -> TrackingBlock:
    if not can_edit_blocklist(p):
        raise Forbidden(N_("Changing the tracking blocklist needs write on the organization."))
    block = db.session.get(TrackingBlock, block_id)
    if block is None:
        raise NotFound()
    db.session.delete(block)
    db.session.flush()
    return block
