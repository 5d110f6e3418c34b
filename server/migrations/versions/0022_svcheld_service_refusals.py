"""email_server_profile: a refused service account held for all its mailboxes

Revision ID: 0022_svcheld
Revises: 0021_actsoff
Create Date: 2026-12-07 15:45:00

``email_server_profile.service_refusals``: when a server refuses the sign-in of a profile's
service account (one login and password for every mailbox of the profile), the refusal is
kept on the profile and no mailbox of it signs in as that account again until its password
is corrected or an administrator tries it again (``sync.engine.service_accounts``): each
mailbox trying in turn was one failed sign-in per mailbox, and servers lock an account out
after a few. Existing profiles have none.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0022_svcheld'
down_revision = '0021_actsoff'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("email_server_profile", sa.Column("service_refusals", sa.JSON(),
                                                    nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_server_profile") as batch:
        batch.drop_column("service_refusals")
