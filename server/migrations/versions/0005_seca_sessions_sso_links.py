"""server-side sessions and Office SSO links (issue 11)

Revision ID: 0005_seca
Revises: 0004_send
Create Date: 2026-12-05 01:00:00

``user_session``: one row per signed-in browser session (sign-out deletes it). ``sso_link``:
the Microsoft Entra tenant + object id each user signs in with through Office SSO.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_seca'
down_revision = '0004_send'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('user_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('key_digest', sa.String(length=64), nullable=False),
    sa.Column('remember', sa.Boolean(), nullable=False),
    sa.Column('created_on', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_on', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_user_session_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_session')),
    sa.UniqueConstraint('key_digest', name=op.f('uq_user_session_key_digest'))
    )
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_session_user_id'), ['user_id'], unique=False)
    op.create_table('sso_link',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('object_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('linked_on', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_sso_link_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'object_id', name=op.f('pk_sso_link')),
    sa.UniqueConstraint('user_id', name=op.f('uq_sso_link_user_id'))
    )


def downgrade():
    op.drop_table('sso_link')
    with op.batch_alter_table('user_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_session_user_id'))
    op.drop_table('user_session')
