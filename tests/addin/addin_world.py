"""A small organization for the add-in API tests, built through the record services.

    root ─┬─ Sales A: ann (Salesperson), teammate (Salesperson), csr (Customer Service)
          └─ Sales B: bob (Salesperson)

Fabrikam (account, ann's) with Carol (contact, ann's, carol@fabrikam.test), an open
opportunity and an open case; Lee (lead, ann's, lee@startup.test); Dave (contact, bob's in B,
dave@litware.test), whom ann may not read.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import event

from server.crm.services import records
from server.crm.models import Case
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security import authz
from server.security.bootstrap import create_user, root_unit
from server.security.models import BusinessUnit


@dataclass
class World:
    ann: object
    teammate: object
    csr: object
    bob: object
    admin: object
    noaddin: object
    fabrikam: object
    carol: object
    lee: object
    dave: object
    opportunity: object
    case: object


def build() -> World:
    root = root_unit()
    unit_a = BusinessUnit(name="Sales A", parent_id=root.id)
    unit_b = BusinessUnit(name="Sales B", parent_id=root.id)
    db.session.add_all([unit_a, unit_b])
    db.session.flush()

    def user(email, name, unit, roles):
        return create_user(email, name, unit=unit, roles=roles,  # no password: pane tokens
                           job_title="Account manager", phone="+1 555 0100")

    ann = user("ann@contoso.test", "Ann Archer", unit_a, ["Salesperson"])
    teammate = user("tess@contoso.test", "Tess Teammate", unit_a, ["Salesperson"])
    csr = user("cyd@contoso.test", "Cyd Service", unit_a, ["Customer Service Representative"])
    bob = user("bob@contoso.test", "Bob Baker", unit_b, ["Salesperson"])
    admin = user("root@contoso.test", "Ada Admin", root, ["System Administrator"])
    noaddin = user("nora@contoso.test", "Nora Noaddin", unit_a, [])

    pa, pb = authz.principal(ann), authz.principal(bob)
    fabrikam = records.create(pa, RECORD_TYPES["account"], {
        "name": "Fabrikam", "email1": "info@fabrikam.test", "city": "Seattle", "phone": "+1 555 0199"})
    carol = records.create(pa, RECORD_TYPES["contact"], {
        "first_name": "Carol", "last_name": "Customer", "job_title": "Buyer",
        "email1": "carol@fabrikam.test", "phone": "+1 555 0123", "parent_account_id": fabrikam.id})
    lee = records.create(pa, RECORD_TYPES["lead"], {
        "first_name": "Lee", "last_name": "Lead", "company_name": "Startup Inc",
        "email1": "lee@startup.test", "topic": "Widgets"})
    dave = records.create(pb, RECORD_TYPES["contact"], {
        "first_name": "Dave", "last_name": "Distant", "email1": "dave@litware.test", "job_title": "CTO"})
    opportunity = records.create(pa, RECORD_TYPES["opportunity"], {
        "name": "Fabrikam widgets", "customer_account_id": fabrikam.id, "estimated_value": "12000"})
    case = Case(title="Broken widget", ticket_number="CAS-00001", customer_account_id=fabrikam.id,
                owner_user_id=ann.id, owning_business_unit_id=unit_a.id)
    db.session.add(case)
    db.session.commit()
    return World(ann, teammate, csr, bob, admin, noaddin, fabrikam, carol, lee, dave,
                 opportunity, case)


def person(address: str, name: str = "") -> dict:
    return {"name": name, "address": address}


def message(**overrides) -> dict:
    """An item as the pane describes a received email (no bodies)."""
    item = {"type": "message", "mode": "read",
            "internet_message_id": "<m1@fabrikam.test>", "conversation_id": "AAQkAGI2",
            "item_id": "AAMkAGI2", "subject": "Widgets order",
            "from": person("carol@fabrikam.test", "Carol Customer"),
            "to": [person("ann@contoso.test", "Ann Archer")], "cc": [],
            "organizer": None, "required_attendees": [], "optional_attendees": [],
            "start": None, "end": None, "location": None, "user_address": "ann@contoso.test"}
    item.update(overrides)
    return item


def meeting(**overrides) -> dict:
    item = {"type": "appointment", "mode": "read", "internet_message_id": None,
            "conversation_id": None, "item_id": "AAMkMeeting1", "subject": "Quarterly review",
            "from": None, "to": [], "cc": [],
            "organizer": person("carol@fabrikam.test", "Carol Customer"),
            "required_attendees": [person("ann@contoso.test", "Ann Archer"),
                                   person("lee@startup.test", "Lee Lead")],
            "optional_attendees": [person("stranger@nowhere.test", "Stranger")],
            "start": "2025-03-04T15:00:00Z", "end": "2025-03-04T16:00:00+00:00",
            "location": "Room 1", "user_address": "ann@contoso.test"}
    item.update(overrides)
    return item


class QueryCounter:
    """Counts the SQL statements the application sends while active."""

    def __init__(self, engine):
        self.engine, self.statements = engine, []

    def _count(self, conn, cursor, statement, *args):
        self.statements.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    @property
    def count(self) -> int:
        return len(self.statements)
