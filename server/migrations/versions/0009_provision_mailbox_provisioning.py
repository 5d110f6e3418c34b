"""mailbox provisioning: defaults, approval per owner kind, forward rules, bulk jobs

Revision ID: 0009_provision
Revises: 0008_pane
Create Date: 2026-12-05 23:40:00

* ``organization``: the default email server profile and methods per direction that a new
  mailbox gets, whether every new user and queue with an address gets one at once, and a
  second approval switch for queues' mailboxes (``require_email_approval`` now speaks for
  users' mailboxes; the queues' switch starts as it was).
* ``mailbox``: "process email received after" of its own, "delete messages after
  processing" for a forward mailbox, and the state of the forwarding rule the CRM put on
  the owner's mail server.
* ``mailbox_job`` / ``mailbox_job_item``: bulk approve, Test & Enable and apply-defaults,
  claimed item by item by workers with leases.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0009_provision'
down_revision = '0008_pane'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organization") as batch:
        batch.add_column(sa.Column("require_queue_email_approval", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("default_server_profile_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("default_incoming_method", sa.String(length=20),
                                   nullable=False, server_default="server_side_sync"))
        batch.add_column(sa.Column("default_outgoing_method", sa.String(length=20),
                                   nullable=False, server_default="server_side_sync"))
        batch.add_column(sa.Column("default_acts_method", sa.String(length=20), nullable=False,
                                   server_default="none"))
        batch.add_column(sa.Column("create_mailboxes_automatically", sa.Boolean(),
                                   nullable=False, server_default=sa.false()))
        batch.create_foreign_key("fk_organization_default_server_profile_id",
                                 "email_server_profile", ["default_server_profile_id"], ["id"],
                                 ondelete="SET NULL")
    op.execute("UPDATE organization SET require_queue_email_approval = require_email_approval")
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("process_emails_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("delete_after_processing", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("forward_rule_status", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("forward_rule_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("forward_rule_on", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "mailbox_job",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=400), nullable=False),
        sa.Column("created_by_id", sa.Integer(),
                  sa.ForeignKey("user.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("finished_on", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "mailbox_job_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("mailbox_job.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("mailbox_id", sa.Integer(), sa.ForeignKey("mailbox.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("email_address", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_on", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_on", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_mailbox_job_item_job_id", "mailbox_job_item", ["job_id"])
    op.create_index("ix_mailbox_job_item_claim", "mailbox_job_item",
                    ["status", "lease_expires_on"])


def downgrade() -> None:
    op.drop_index("ix_mailbox_job_item_claim", table_name="mailbox_job_item")
    op.drop_index("ix_mailbox_job_item_job_id", table_name="mailbox_job_item")
    op.drop_table("mailbox_job_item")
    op.drop_table("mailbox_job")
    with op.batch_alter_table("mailbox") as batch:
        for name in ("forward_rule_on", "forward_rule_message", "forward_rule_status",
                     "delete_after_processing", "process_emails_after"):
            batch.drop_column(name)
    with op.batch_alter_table("organization") as batch:
        batch.drop_constraint("fk_organization_default_server_profile_id", type_="foreignkey")
        for name in ("create_mailboxes_automatically", "default_acts_method",
                     "default_outgoing_method", "default_incoming_method",
                     "default_server_profile_id", "require_queue_email_approval"):
            batch.drop_column(name)
