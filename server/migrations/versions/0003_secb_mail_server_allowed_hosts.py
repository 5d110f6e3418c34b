"""organization.mail_server_allowed_hosts: loopback or link-local mail servers that email
server profiles may reach (server.sync.engine.hosts); empty for every existing organization

Revision ID: 0003_secb
Revises: 0002_keys
Create Date: 2026-12-05 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_secb'
down_revision = '0002_keys'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mail_server_allowed_hosts', sa.String(length=2000),
                                      server_default='', nullable=False))


def downgrade():
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.drop_column('mail_server_allowed_hosts')
