"""The three-way merge of one synced item: what the CRM holds now, what the server holds now,
and what each held when they were last in step. Per field, by its sync direction: a side
that alone changed a field wins it where the direction lets its change through; where both
changed a two-way field, the later writer wins and the other value is reported lost."""
from __future__ import annotations

from dataclasses import dataclass, field

from server.sync.items.fields import FIELDS, direction, to_json


@dataclass
class Merged:
    to_crm: dict = field(default_factory=dict)  # field -> the server's value, for the CRM
    to_server: list[str] = field(default_factory=list)  # fields whose CRM value goes out
    lost: list[tuple[str, object, str]] = field(default_factory=list)  # field, value, side


def merge(kind: str, crm: dict, synced: dict | None, server: dict, server_before: dict | None,
          directions: dict[tuple[str, str], str], server_newer: bool) -> Merged:
    """``synced``: the CRM's values at the last sync (JSON form; None: never synced, the CRM
    counts as unchanged); ``server_before``: the server's values then (None: all new)."""
    out = Merged()
    for name in FIELDS[kind]:
        way = direction(kind, name, directions)
        if way == "none":
            continue
        crm_now, server_now = to_json(crm.get(name)), to_json(server.get(name))
        if crm_now == server_now:
            continue
        crm_changed = synced is not None and synced.get(name) != crm_now
        server_changed = server_before is None or to_json(server_before.get(name)) != server_now
        takes_server = way in ("to_crm", "both")
        takes_crm = way in ("to_server", "both")
        if server_changed and crm_changed:
            if way == "both":
                takes_server = server_newer
                takes_crm = not server_newer
                out.lost.append((name, crm.get(name) if server_newer else server.get(name),
                                 "crm" if server_newer else "server"))
        elif server_changed:
            takes_crm = way == "to_server"  # the CRM is the master of the field
        elif crm_changed:
            takes_server = way == "to_crm"  # the server is the master of the field
        else:  # neither changed (a value one side cannot hold as the other): leave both
            takes_server = takes_crm = False
        if takes_server:
            out.to_crm[name] = server.get(name)
        elif takes_crm:
            out.to_server.append(name)
    return out
