"""The privilege catalogue: tables, privileges, depths, named privileges and the built-in
security roles. Data only; ``authz`` applies it."""
from __future__ import annotations

from enum import IntEnum


class Depth(IntEnum):
    NONE = 0
    USER = 1  # records the user (or one of their teams) owns, or that are shared with them
    BUSINESS_UNIT = 2  # records owned in the user's business unit
    PARENT_CHILD = 3  # ... in the user's business unit and the units below it
    ORGANIZATION = 4  # every record

    @property
    def label(self) -> str:
        return {0: "None", 1: "User", 2: "Business unit", 3: "Parent: child business units",
                4: "Organization"}[self.value]


PRIVILEGES = ("create", "read", "write", "delete", "append", "append_to", "assign", "share")

# Tables whose rows are owned by a user or team (privilege depth applies to them).
RECORD_TABLES = ("account", "contact", "lead", "opportunity", "case", "queue", "activity")
# Administration tables (organization-wide or by business unit).
ADMIN_TABLES = ("user", "team", "business_unit", "security_role", "field_security_profile",
                "organization", "mailbox", "email_server_profile")
TABLES = RECORD_TABLES + ADMIN_TABLES

NAMED_PRIVILEGES = {
    "use_outlook_addin": "Use the Outlook add-in",
    "track_email": "Track email in the CRM",
    "send_as_other_user": "Send email as another user",
    "approve_email_addresses": "Approve email addresses for users and queues",
    "sync_appointments": "Sync appointments",
    "sync_contacts": "Sync contacts",
    "sync_tasks": "Sync tasks",
    "view_sync_dashboard": "View the sync dashboard",
}

N, U, B, P, O = (Depth.NONE, Depth.USER, Depth.BUSINESS_UNIT, Depth.PARENT_CHILD,
                 Depth.ORGANIZATION)


def _grid(depths: dict[str, dict[str, Depth]]) -> dict[str, Depth]:
    return {f"{table}.{priv}": depth for table, privs in depths.items()
            for priv, depth in privs.items() if depth}


def _all(depth: Depth, *, but: dict[str, Depth] | None = None) -> dict[str, Depth]:
    privs = {p: depth for p in PRIVILEGES}
    privs.update(but or {})
    return privs


_READ_ORG = {"read": O}

BUILTIN_ROLES: dict[str, dict] = {
    "System Administrator": {
        "description": "Full access to every record and to the administration.",
        "privileges": _grid({t: _all(O) for t in TABLES}),
        "named": set(NAMED_PRIVILEGES),
    },
    "Sales Manager": {
        "description": "Manages a sales team: sees and edits everything in the business "
                       "unit and below; reassigns records.",
        "privileges": _grid({
            **{t: _all(P) for t in ("account", "contact", "lead", "opportunity", "activity")},
            "case": {"read": P, "append_to": P},
            "queue": {"read": O, "append_to": O},
            "user": _READ_ORG, "team": _READ_ORG, "business_unit": _READ_ORG,
            "mailbox": {"read": U, "write": U},
        }),
        "named": {"use_outlook_addin", "track_email", "sync_appointments", "sync_contacts",
                  "sync_tasks", "view_sync_dashboard"},
    },
    "Salesperson": {
        "description": "Works their own accounts, contacts, leads and opportunities; reads "
                       "the business unit's.",
        "privileges": _grid({
            **{t: _all(U, but={"read": B, "append_to": B}) for t in
               ("account", "contact", "lead", "opportunity")},
            "activity": _all(U, but={"read": B, "append": B}),
            "case": {"read": B, "append_to": B},
            "queue": {"read": O, "append_to": O},
            "user": _READ_ORG, "team": _READ_ORG, "business_unit": _READ_ORG,
            "mailbox": {"read": U, "write": U},
        }),
        "named": {"use_outlook_addin", "track_email", "sync_appointments", "sync_contacts",
                  "sync_tasks"},
    },
    "Customer Service Representative": {
        "description": "Handles cases and queues for the business unit; reads customers.",
        "privileges": _grid({
            "case": _all(B, but={"delete": U, "share": U}),
            "contact": {"create": B, "read": B, "write": B, "append": B, "append_to": B},
            "account": {"read": B, "append_to": B},
            "lead": {"read": U, "append_to": U},
            "opportunity": {"read": U},
            "activity": _all(B, but={"delete": U}),
            "queue": {"read": O, "append": O, "append_to": O},
            "user": _READ_ORG, "team": _READ_ORG, "business_unit": _READ_ORG,
            "mailbox": {"read": U, "write": U},
        }),
        "named": {"use_outlook_addin", "track_email", "sync_appointments", "sync_tasks"},
    },
}
