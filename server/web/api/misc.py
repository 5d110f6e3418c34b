"""REST endpoints about the caller and addresses: ``/me`` (who I am, my roles and
privileges) and ``/resolve`` (which CRM records stand behind email addresses)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from server.crm.services import records
from server.i18n import N_
from server.mailkeys import normalize_address
from server.security.privileges import NAMED_PRIVILEGES, Depth
from server.web.api.common import invalid, principal, query_args

MAX_ADDRESSES = 100


def me():
    query_args(set())
    p = principal()
    user = p.user
    privileges: dict[str, dict[str, str]] = {}
    for key, depth in sorted(p.depths.items()):
        table, _, privilege = key.partition(".")
        if depth > Depth.NONE:
            privileges.setdefault(table, {})[privilege] = Depth(depth).name.lower()
    return jsonify({
        "id": user.id, "email": user.email, "full_name": user.full_name,
        "first_name": user.first_name, "last_name": user.last_name, "job_title": user.job_title,
        "business_unit": {"id": user.business_unit.id, "name": user.business_unit.name},
        "roles": [{"id": r.id, "name": r.name, "is_builtin": r.is_builtin} for r in user.roles],
        "teams": [{"id": t.id, "name": t.name,
                   "roles": [{"id": r.id, "name": r.name, "is_builtin": r.is_builtin}
                             for r in t.roles]} for t in user.teams],
        "is_admin": p.is_admin,
        "named_privileges": sorted(n for n in p.named if n in NAMED_PRIVILEGES),
        "privileges": privileges,
    })


def resolve():
    """``?address=a&address=b``: each address with the records behind it, best first, as
    ``records.visible_matches`` states: records the caller may not read, or that carry the
    address only in a field they may not read, are left out (such an address reads as
    unresolved); a name is the title as the caller may see it."""
    p = principal()
    args = query_args({"address"}, multi={"address"})
    addresses = list(dict.fromkeys(args.get("address", [])))
    if not addresses:
        raise invalid({"address": N_("Give at least one address.")})
    if len(addresses) > MAX_ADDRESSES:
        raise invalid({"address": f"At most {MAX_ADDRESSES} addresses at a time."})
    if any(len(a) > 320 for a in addresses):
        raise invalid({"address": N_("An address has at most 320 characters.")})
    found = records.resolve_for(p, addresses)
    results = []
    for address in addresses:
        matches = found.get(address, [])
        results.append({
            "address": address, "normalized": normalize_address(address),
            "resolved": bool(matches),
            "matches": [{"type": m.record_type, "id": m.record_id, "name": m.name,
                         "is_active": m.is_active} for m in matches],
        })
    return jsonify({"results": results})


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/me", "me", me, methods=["GET"])
    bp.add_url_rule("/resolve", "resolve", resolve, methods=["GET"])
