"""Who a page may offer: the business units, active users and teams a principal can read,
for pickers (owner, manager, member, "share with") on record and administration pages.
Every query is scoped by ``authz.scope`` in SQL and sorted by name, case-insensitively.
"""
from __future__ import annotations

from sqlalchemy import func, select

from server.db import db
from server.security import authz
from server.security.authz import Principal
from server.security.models import BusinessUnit, Team, User

PICKER_LIMIT = 500


def units(p: Principal) -> list[BusinessUnit]:
    """Business units ``p`` can read."""
    return list(db.session.scalars(select(BusinessUnit).where(authz.scope(p, BusinessUnit,
                                                                          "read"))
                                   .order_by(func.lower(BusinessUnit.name))))


def people(p: Principal, limit: int = PICKER_LIMIT) -> list[User]:
    """Active users ``p`` can read."""
    return list(db.session.scalars(select(User).where(User.is_active.is_(True),
                                                      authz.scope(p, User, "read"))
                                   .order_by(func.lower(User.full_name)).limit(limit)))


def teams(p: Principal, limit: int = PICKER_LIMIT) -> list[Team]:
    """Teams ``p`` can read."""
    return list(db.session.scalars(select(Team).where(authz.scope(p, Team, "read"))
                                   .order_by(func.lower(Team.name)).limit(limit)))


def unit_members(p: Principal, unit: BusinessUnit, limit: int = 50) -> list[User]:
    """Users of one business unit that ``p`` can read, active or not."""
    return list(db.session.scalars(select(User).where(User.business_unit_id == unit.id,
                                                      authz.scope(p, User, "read"))
                                   .order_by(func.lower(User.full_name)).limit(limit)))
