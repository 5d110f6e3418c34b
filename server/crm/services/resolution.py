"""Email address resolution: which CRM records stand behind a list of addresses.

Used by the add-in (who is who), the sync engine (activity parties, tracking rules) and
outgoing mail. Order per address, as Dynamics resolves: user, contact, account, lead, queue;
within a type, records the asking user owns first. Inactive records are left out unless the
organization resolves them; an organization may also leave ambiguous addresses unresolved.
One indexed query for the batch, then one query for the records of every type that matched
(a caller that needs more of those records, as the add-in's cards do, passes its own ``load``
and gets the same matching and ranking).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import literal, select, union_all

from server.crm.addresses import EmailAddress
from server.mailkeys import normalize_address
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.db import cached_statement, db, in_values, select_rows
from server.security.models import User

ORDER = ("user", "contact", "account", "lead", "queue")

# (``normalize_address`` keeps its recent answers: the pane and the sync engine see the same
# addresses again and again.)
normalized = normalize_address


@dataclass(frozen=True)
class Match:
    record_type: str
    record_id: int
    name: str
    owner_user_id: int | None
    is_active: bool


def _model(kind: str):
    return User if kind == "user" else RECORD_TYPES[kind].model


def _select(kind: str, ids: set[int]):
    model = _model(kind)
    title = model.full_name if kind in ("user", "contact", "lead") else (
        model.name)
    owner = model.owner_user_id if kind != "user" else model.id
    return select(literal(kind).label("kind"), model.id.label("id"), title.label("name"),
                  owner.label("owner"), model.is_active.label("active")).where(model.id.in_(ids))


def _lookup():
    """The index rows of a batch of normalized addresses (built once per database)."""
    return cached_statement(("address lookup",), lambda: select(
        EmailAddress.address, EmailAddress.record_type, EmailAddress.record_id)
        .where(in_values(EmailAddress.address, "addresses")), prepared=True)


Loader = Callable[[dict[str, set[int]]], dict[str, dict[int, Match]]]


def _load_all(by_kind: dict[str, set[int]]) -> dict[str, dict[int, Match]]:
    """The matched records of every type in one round trip (a UNION ALL of one branch per
    type)."""
    out: dict[str, dict[int, Match]] = {kind: {} for kind in by_kind}
    if not by_kind:
        return out
    branches = [_select(kind, ids) for kind, ids in by_kind.items()]
    query = branches[0] if len(branches) == 1 else union_all(*branches)
    for kind, record_id, name, owner, active in db.session.execute(query):
        out[kind][record_id] = Match(kind, record_id, name, owner if kind != "user" else None,
                                     bool(active))
    return out


def resolve(addresses: list[str], *, user_id: int | None = None,
            org: Organization | None = None, load: Loader = _load_all) -> dict[str, list[Match]]:
    """Map each given address (as given) to its matching records, best first; an empty list
    means unresolved (unknown, not an address, or ambiguous where the org says so).
    ``load`` turns the matched ids per record type into their ``Match`` entries (every id
    that still exists, readable by the user or not)."""
    org = org or db.session.get(Organization, 1)
    include_inactive = bool(org and org.resolve_inactive_records)
    unresolve_ambiguous = bool(org and org.unresolve_ambiguous_addresses)
    given = {a: normalized(a) for a in addresses}
    wanted = {n for n in given.values() if n}
    hits: dict[str, list[tuple[str, int]]] = {}
    if wanted:
        rows = select_rows(_lookup(), {"addresses": list(wanted)}).all()
        for address, kind, record_id in rows:
            hits.setdefault(address, []).append((kind, record_id))
    by_kind: dict[str, set[int]] = {}
    for refs in hits.values():
        for kind, record_id in refs:
            by_kind.setdefault(kind, set()).add(record_id)
    loaded = load(by_kind) if by_kind else {}

    def rank(m: Match):
        mine = user_id is not None and m.owner_user_id == user_id
        return ORDER.index(m.record_type), not mine, m.record_id

    out: dict[str, list[Match]] = {}
    for address, n in given.items():
        matches = [loaded[k][i] for k, i in hits.get(n, ()) if i in loaded.get(k, {})]
        matches = sorted({m for m in matches if include_inactive or m.is_active}, key=rank)
        if unresolve_ambiguous and len(matches) > 1:
            matches = []
        out[address] = matches
    return out
