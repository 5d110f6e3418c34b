"""The provisioning revision (0009_provision) upgrades a database that has an organization
which waives approval and a mailbox: the queues' approval switch starts as the users' one,
the defaults are the old behaviour (no automatic mailboxes, no default profile), the mailbox
keeps everything and gets the new columns' defaults, and the job tables are there
(SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401
from tests.test_migrations_send import _upgrade, app_at


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_keeps_the_organization_and_mailboxes(database, tmp_path, request):
    app, url = app_at("0008_pane", database, tmp_path, request)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO organization (id, name, base_currency, resolve_inactive_records, "
                "unresolve_ambiguous_addresses, attachment_max_bytes, use_tracking_token, "
                "tracking_token_prefix, track_sent_items, track_between_users_as_two, "
                "smart_matching, require_email_approval, allow_unresolved_recipients, "
                "mail_server_allowed_hosts, modified_on) VALUES (1, 'Contoso', 'USD', false, "
                "false, 1000, true, 'CRM:', true, false, false, false, true, '', "
                "CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO business_unit (id, name, parent_id, is_active, created_on) "
                "VALUES (1, 'Contoso', NULL, true, CURRENT_TIMESTAMP)"))
            conn.execute(text(
                "INSERT INTO mailbox (id, name, email_address, is_forward_mailbox, "
                "incoming_method, outgoing_method, acts_method, tracking_option, "
                "auto_create_contacts, email_approved, enabled, incoming_enabled, "
                "outgoing_enabled, incoming_status, outgoing_status, acts_status, "
                "sync_interval_seconds, consecutive_failures, backlog, sync_requested, "
                "owning_business_unit_id, created_on) VALUES (7, 'Forward', 'fwd@contoso.test', "
                "true, 'server_side_sync', 'none', 'none', 'all', false, true, true, true, true, "
                "'success', 'not_run', 'not_run', 300, 0, 0, false, 1, CURRENT_TIMESTAMP)"))
        db.engine.dispose()
    _upgrade(app, "0009_provision")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text(
                "SELECT require_email_approval, require_queue_email_approval, "
                "default_server_profile_id, default_incoming_method, default_outgoing_method, "
                "default_acts_method, create_mailboxes_automatically FROM organization")).one() \
                == (False, False, None, "server_side_sync", "server_side_sync", "none", False)
            assert conn.execute(text(
                "SELECT email_address, enabled, incoming_status, delete_after_processing, "
                "process_emails_after, forward_rule_status FROM mailbox")).one() == (
                "fwd@contoso.test", True, "success", False, None, None)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"mailbox_job", "mailbox_job_item"} <= tables
