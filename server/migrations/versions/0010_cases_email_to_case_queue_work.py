"""email to case: a queue's case rules and acknowledgements; cases' resolution time and
follow-up link; queue items' time of pick-up

Revision ID: 0010_cases
Revises: 0009_provision
Create Date: 2026-12-05 23:30:00

* ``case_rule``: a queue's automatic record creation and update rules, in order.
* ``case_acknowledgement``: the acknowledgements those rules sent, per sender and day.
* ``support_case.resolved_on`` / ``parent_case_id``: when a case was resolved (a reply
  within the rule's window reopens it) and the case a follow-up case was opened for.
* ``queue_item.worked_on``: since when the person working an item works it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_cases'
down_revision = '0009_provision'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'case_rule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('queue_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('conditions', sa.JSON(), nullable=False),
        sa.Column('create_contact', sa.Boolean(), nullable=False),
        sa.Column('priority', sa.String(length=10), nullable=False),
        sa.Column('routing', sa.String(length=20), nullable=False),
        sa.Column('route_user_id', sa.Integer(), nullable=True),
        sa.Column('route_team_id', sa.Integer(), nullable=True),
        sa.Column('last_routed_user_id', sa.Integer(), nullable=True),
        sa.Column('on_resolved', sa.String(length=10), nullable=False),
        sa.Column('resolved_window_days', sa.Integer(), nullable=False),
        sa.Column('acknowledge', sa.Boolean(), nullable=False),
        sa.Column('ack_template_id', sa.Integer(), nullable=True),
        sa.Column('ack_per_sender_per_day', sa.Integer(), nullable=False),
        sa.Column('created_on', sa.DateTime(timezone=True), nullable=False),
        sa.Column('modified_on', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['ack_template_id'], ['email_template.id'],
                                name=op.f('fk_case_rule_ack_template_id_email_template'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['last_routed_user_id'], ['user.id'],
                                name=op.f('fk_case_rule_last_routed_user_id_user'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['queue_id'], ['queue.id'],
                                name=op.f('fk_case_rule_queue_id_queue'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['route_team_id'], ['team.id'],
                                name=op.f('fk_case_rule_route_team_id_team'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['route_user_id'], ['user.id'],
                                name=op.f('fk_case_rule_route_user_id_user'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_case_rule')),
    )
    op.create_index('ix_case_rule_queue_position', 'case_rule', ['queue_id', 'position'])
    op.create_table(
        'case_acknowledgement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('queue_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=True),
        sa.Column('email_id', sa.Integer(), nullable=True),
        sa.Column('created_on', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['support_case.id'],
                                name=op.f('fk_case_acknowledgement_case_id_support_case'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['email_id'], ['activity.id'],
                                name=op.f('fk_case_acknowledgement_email_id_activity'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['queue_id'], ['queue.id'],
                                name=op.f('fk_case_acknowledgement_queue_id_queue'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_case_acknowledgement')),
    )
    op.create_index('ix_case_acknowledgement_address', 'case_acknowledgement',
                    ['address', 'created_on'])
    with op.batch_alter_table('support_case') as batch:
        batch.add_column(sa.Column('resolved_on', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('parent_case_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_support_case_parent_case_id_support_case'),
                                 'support_case', ['parent_case_id'], ['id'],
                                 ondelete='SET NULL')
        batch.create_index(batch.f('ix_support_case_parent_case_id'), ['parent_case_id'])
    with op.batch_alter_table('queue_item') as batch:
        batch.add_column(sa.Column('worked_on', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('queue_item') as batch:
        batch.drop_column('worked_on')
    with op.batch_alter_table('support_case') as batch:
        batch.drop_index(batch.f('ix_support_case_parent_case_id'))
        batch.drop_constraint(op.f('fk_support_case_parent_case_id_support_case'),
                              type_='foreignkey')
        batch.drop_column('parent_case_id')
        batch.drop_column('resolved_on')
    op.drop_index('ix_case_acknowledgement_address', table_name='case_acknowledgement')
    op.drop_table('case_acknowledgement')
    op.drop_index('ix_case_rule_queue_position', table_name='case_rule')
    op.drop_table('case_rule')
