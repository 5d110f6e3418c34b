"""security stamp: organization.security_stamp, changed by triggers on every write to what a
principal is made of and to the organization's settings

Revision ID: 0017_stamp
Revises: 0016_pgtimeline
Create Date: 2026-12-07 10:00:00

The add-in's context call read the principal's grants and the organization's settings in a
round trip each on every call. A process now keeps them and uses them again while the stamp,
read in the same statement as the bearer token, is unchanged (server/security/stamp.py).
Triggers change the stamp on every write to ``user_role``, ``team_member``, ``team_role``,
``security_role``, ``role_privilege``, ``secured_field`` and ``organization``, whoever writes
(the ORM, Core, another process, psql). The statements are those of
``server.security.stamp.ddl`` at this revision (a migration imports nothing of the app).
A later SQLite migration that rebuilds one of these tables (``batch_alter_table``) drops its
triggers: it must create them again (tests/test_migrations_stamp.py checks the head).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0017_stamp'
down_revision = '0016_pgtimeline'
branch_labels = None
depends_on = None

TABLES = ("user_role", "team_member", "team_role", "security_role", "role_privilege",
          "secured_field")
NEW_STAMP = "floor(random() * 4611686018427387904)::bigint"


def upgrade() -> None:
    op.add_column("organization", sa.Column("security_stamp", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"UPDATE organization SET security_stamp = {NEW_STAMP}")
        op.execute("CREATE OR REPLACE FUNCTION regarding_bump_security_stamp() RETURNS trigger "
                   "LANGUAGE plpgsql AS $$ BEGIN UPDATE organization SET security_stamp = "
                   f"{NEW_STAMP} WHERE id = 1; RETURN NULL; END $$")
        op.execute("CREATE OR REPLACE FUNCTION regarding_new_security_stamp() RETURNS trigger "
                   "LANGUAGE plpgsql AS $$ BEGIN IF NEW.security_stamp IS NOT DISTINCT FROM "
                   f"OLD.security_stamp THEN NEW.security_stamp := {NEW_STAMP}; END IF; "
                   "RETURN NEW; END $$")
        for t in TABLES:
            op.execute(f'CREATE TRIGGER security_stamp_{t} AFTER INSERT OR UPDATE OR DELETE OR '
                       f'TRUNCATE ON "{t}" FOR EACH STATEMENT EXECUTE FUNCTION '
                       f'regarding_bump_security_stamp()')
        op.execute("CREATE TRIGGER security_stamp_organization BEFORE UPDATE ON organization "
                   "FOR EACH ROW EXECUTE FUNCTION regarding_new_security_stamp()")
        return
    op.execute("UPDATE organization SET security_stamp = random()")
    for t in TABLES:
        for o in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f'CREATE TRIGGER security_stamp_{t}_{o.lower()} AFTER {o} ON "{t}" BEGIN '
                       f"UPDATE organization SET security_stamp = random() WHERE id = 1; END")
    op.execute("CREATE TRIGGER security_stamp_organization AFTER UPDATE ON organization "
               "WHEN NEW.security_stamp IS OLD.security_stamp BEGIN UPDATE organization "
               "SET security_stamp = random() WHERE id = NEW.id; END")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        for t in TABLES:
            op.execute(f'DROP TRIGGER IF EXISTS security_stamp_{t} ON "{t}"')
        op.execute("DROP TRIGGER IF EXISTS security_stamp_organization ON organization")
        op.execute("DROP FUNCTION IF EXISTS regarding_bump_security_stamp()")
        op.execute("DROP FUNCTION IF EXISTS regarding_new_security_stamp()")
    else:
        for t in TABLES:
            for o in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS security_stamp_{t}_{o}")
        op.execute("DROP TRIGGER IF EXISTS security_stamp_organization")
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("security_stamp")
