"""appointments, contacts and tasks synced with mail servers (CalDAV/CardDAV, Graph, EWS)

Revision ID: 0011_act
Revises: 0010_cases
Create Date: 2026-12-05 23:45:00

* ``appointment``: time zone, recurrence (RRULE and its exceptions), reminder, show-as,
  sensitivity and categories; ``task``: status, reminder, sensitivity, categories and its
  iCalendar UID; ``contact``: home phone, postal address, birthday, website, company name
  and its vCard UID; ``activity_party.response``: an attendee's answer. Existing rows keep the defaults (busy, normal, not started).
* ``mailbox.acts_profile_id``: a CalDAV/CardDAV profile beside the mail profile;
  ``mailbox.acts_message``: what the last test or sync of that direction said.
* ``item_cursor`` (per mailbox and collection), ``item_link`` (per synced item),
  ``sync_filter`` and ``field_direction`` (the organization's field sync directions).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_act'
down_revision = '0010_cases'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("appointment") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("recurrence_rule", sa.String(500), nullable=True))
        batch.add_column(sa.Column("recurrence_exceptions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reminder_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("show_as", sa.String(10), nullable=False,
                                   server_default="busy"))
        batch.add_column(sa.Column("sensitivity", sa.String(12), nullable=False,
                                   server_default="normal"))
        batch.add_column(sa.Column("categories", sa.String(1000), nullable=True))
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("task_status", sa.String(12), nullable=False,
                                   server_default="not_started"))
        batch.add_column(sa.Column("reminder_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sensitivity", sa.String(12), nullable=False,
                                   server_default="normal"))
        batch.add_column(sa.Column("categories", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("task_uid", sa.String(400), nullable=True))
        batch.create_index("ix_task_task_uid", ["task_uid"])
    with op.batch_alter_table("contact") as batch:
        batch.add_column(sa.Column("home_phone", sa.String(50), nullable=True))
        batch.add_column(sa.Column("street", sa.String(250), nullable=True))
        batch.add_column(sa.Column("state_province", sa.String(80), nullable=True))
        batch.add_column(sa.Column("postal_code", sa.String(20), nullable=True))
        batch.add_column(sa.Column("country", sa.String(80), nullable=True))
        batch.add_column(sa.Column("birthday", sa.Date(), nullable=True))
        batch.add_column(sa.Column("website", sa.String(200), nullable=True))
        batch.add_column(sa.Column("company_name", sa.String(160), nullable=True))
        batch.add_column(sa.Column("contact_uid", sa.String(400), nullable=True))
        batch.create_index("ix_contact_contact_uid", ["contact_uid"])
    with op.batch_alter_table("activity_party") as batch:
        batch.add_column(sa.Column("response", sa.String(20), nullable=True))
    with op.batch_alter_table("mailbox") as batch:
        batch.add_column(sa.Column("acts_profile_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("acts_message", sa.Text(), nullable=True))
        batch.create_foreign_key("fk_mailbox_acts_profile_id_email_server_profile",
                                 "email_server_profile", ["acts_profile_id"], ["id"],
                                 ondelete="SET NULL")
    op.create_table(
        "item_cursor",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox_id", sa.Integer(), sa.ForeignKey("mailbox.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("collection_key", sa.String(1000), nullable=False),
        sa.Column("collection_name", sa.String(500), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("mailbox_id", "kind", "collection_key"),
    )
    op.create_table(
        "item_link",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox_id", sa.Integer(), sa.ForeignKey("mailbox.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("collection_key", sa.String(1000), nullable=False),
        sa.Column("ref", sa.String(1000), nullable=False),
        sa.Column("etag", sa.String(300), nullable=True),
        sa.Column("uid", sa.String(400), nullable=True),
        sa.Column("activity_id", sa.Integer(), sa.ForeignKey("activity.id", ondelete="SET NULL"),
                  nullable=True, index=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contact.id", ondelete="SET NULL"),
                  nullable=True, index=True),
        sa.Column("tracked", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("server_data", sa.Text(), nullable=True),
        sa.Column("synced_values", sa.JSON(), nullable=True),
        sa.Column("synced_on", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("mailbox_id", "kind", "ref"),
        sa.Index("ix_item_link_uid", "kind", "uid"),
    )
    op.create_table(
        "sync_filter",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"),
                  nullable=True, index=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(10), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "field_direction",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("field", sa.String(60), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.UniqueConstraint("kind", "field"),
    )


def downgrade() -> None:
    op.drop_table("field_direction")
    op.drop_table("sync_filter")
    op.drop_table("item_link")
    op.drop_table("item_cursor")
    with op.batch_alter_table("mailbox") as batch:
        batch.drop_constraint("fk_mailbox_acts_profile_id_email_server_profile",
                              type_="foreignkey")
        batch.drop_column("acts_message")
        batch.drop_column("acts_profile_id")
    with op.batch_alter_table("activity_party") as batch:
        batch.drop_column("response")
    with op.batch_alter_table("contact") as batch:
        batch.drop_index("ix_contact_contact_uid")
        for column in ("contact_uid", "company_name", "website", "birthday", "country",
                       "postal_code", "state_province", "street", "home_phone"):
            batch.drop_column(column)
    with op.batch_alter_table("task") as batch:
        batch.drop_index("ix_task_task_uid")
        for column in ("task_uid", "categories", "sensitivity", "reminder_minutes",
                       "task_status"):
            batch.drop_column(column)
    with op.batch_alter_table("appointment") as batch:
        for column in ("categories", "sensitivity", "show_as", "reminder_minutes",
                       "recurrence_exceptions", "recurrence_rule", "time_zone"):
            batch.drop_column(column)
