"""security stamp: every write to business_unit changes it too

Revision ID: 0018_unitstamp
Revises: 0017_stamp
Create Date: 2026-12-07 14:00:00

A principal's business-unit tree (the user's unit and every unit below it) was read from
``business_unit`` in every request that needed it. It now comes with the principal's grants
(one statement) and is kept with them per process while the security stamp is unchanged
(server/security/stamp.py), so a unit added, moved under another parent, disabled or deleted
must change the stamp: the same triggers as 0017's, on ``business_unit`` (PostgreSQL: one
statement-level trigger calling 0017's function; SQLite: a row trigger per operation). The
statements are those of ``server.security.stamp.ddl`` at this revision (a migration imports
nothing of the app). A later SQLite migration that rebuilds ``business_unit``
(``batch_alter_table``) drops them: it must create them again (tests/test_migrations_stamp.py
checks the head). The stamp itself is left as it is: no code before this revision's keeps
the tree, and this revision's code runs on the upgraded database.
"""
from __future__ import annotations

from alembic import op

# revision identifiers, used by Alembic.
revision = '0018_unitstamp'
down_revision = '0017_stamp'
branch_labels = None
depends_on = None

OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TRIGGER security_stamp_business_unit AFTER INSERT OR UPDATE OR DELETE "
                   "OR TRUNCATE ON business_unit FOR EACH STATEMENT EXECUTE FUNCTION "
                   "regarding_bump_security_stamp()")
    else:
        for o in OPERATIONS:
            op.execute(f"CREATE TRIGGER security_stamp_business_unit_{o.lower()} AFTER {o} ON "
                       "business_unit BEGIN UPDATE organization SET security_stamp = random() "
                       "WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS security_stamp_business_unit ON business_unit")
    else:
        for o in OPERATIONS:
            op.execute(f"DROP TRIGGER IF EXISTS security_stamp_business_unit_{o.lower()}")
