"""Automatically created contacts: unknown people on the other side of a tracked email become
contacts owned by the mailbox's owner (as "Automatically create records" does in Dynamics),
named from their display name or address."""
from __future__ import annotations

import re

from server.crm.services import records
from server.mailkeys import normalize_address
from server.crm.registry import RECORD_TYPES
from server.crm.services.resolution import Match, resolve
from server.errors import Forbidden, Invalid
from server.sync.engine.content import clean
from server.sync.engine.context import MailboxRun
from server.sync.mail.decision import DecisionContext
from server.sync.mail.message import MailMessage

__all__ = ["auto_create_contacts", "split_name"]


_NAME_SPLIT = re.compile(r"[._\-+]+")


def split_name(display: str | None, address: str) -> tuple[str | None, str]:
    """(first name, last name) for a new contact: "Last, First", "First Middle Last", or
    from the address ("ann.lee@..." -> Ann, Lee) when the display name is missing."""
    name = re.sub(r"\s+", " ", (display or "").strip().strip("\"'")).strip()
    if name and normalize_address(name) is None and "@" not in name:
        if "," in name:
            last, _, first = name.partition(",")
            if first.strip() and last.strip():
                return first.strip()[:100], last.strip()[:100]
        parts = name.split(" ")
        if len(parts) == 1:
            return None, parts[0][:100]
        return " ".join(parts[:-1])[:100], parts[-1][:100]
    local = address.partition("@")[0]
    parts = [p for p in _NAME_SPLIT.split(local) if p]
    if len(parts) >= 2 and all(p.isalpha() for p in parts):
        return parts[0].capitalize()[:100], " ".join(p.capitalize() for p in parts[1:])[:100]
    return None, (local or address)[:100]


def auto_create_contacts(ctx: MailboxRun, msg: MailMessage, dctx: DecisionContext,
                         matches: dict[str, list[Match]]) -> None:
    """Unknown people on the other side of a tracked email become contacts, owned by the
    mailbox's owner. ``matches`` (the wave's resolved addresses) learns the new contacts, so
    a later message of the wave from the same person creates no second one."""
    created = []
    for address in dctx.counterparts(msg):
        if matches.get(address.address) or address.address in ctx.owner_addresses \
                or address.address in ctx.org_addresses:
            continue
        first, last = split_name(clean(address.name), address.address)
        data = {"last_name": last, "email1": address.address}
        if first:
            data["first_name"] = first
        try:
            records.create(ctx.actor, RECORD_TYPES["contact"], data, owner=ctx.owner)
        except (Forbidden, Invalid):
            continue  # the owner may not create contacts: the bare address stays a party
        created.append(address.address)
    if created:
        matches.update(resolve(created, user_id=ctx.owner_user_id, org=ctx.org))
