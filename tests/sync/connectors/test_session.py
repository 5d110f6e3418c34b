"""The session lifecycle the connectors share (``common.Session``), against a real Dovecot
over IMAP and POP3: a sign-in the server refuses leaves no session behind, and a failure
inside ``with`` is the one the caller sees even when closing fails too (the server died)."""
from __future__ import annotations

import pytest

from server.sync.connectors.base import ConnectorError
from server.sync.connectors.imap import ImapConnector
from server.sync.connectors.pop3 import Pop3Connector
from tests.sync.connectors.conftest import imap_account
from tests.sync.connectors.test_pop3 import pop3_account

CONNECTORS = {"imap": (ImapConnector, imap_account), "pop3": (Pop3Connector, pop3_account)}


class SyncFailed(Exception):
    """What the code inside ``with`` raised."""


@pytest.mark.parametrize("protocol", list(CONNECTORS))
def test_a_refused_sign_in_leaves_no_session(dovecot, mail_user, protocol):
    connector_class, account_for = CONNECTORS[protocol]
    connector = connector_class(account_for(dovecot, mail_user, password="not-the-password"))
    with pytest.raises(ConnectorError) as refused:
        connector.connect()
    assert refused.value.code == "auth_failed" and refused.value.severity == "auth"
    with pytest.raises(ConnectorError) as gone:
        connector.client  # noqa: B018 - the session is closed, not half-open
    assert gone.value.code == "not_connected"
    connector.close()  # nothing left to close: no error either


@pytest.mark.parametrize("protocol", list(CONNECTORS))
def test_closing_on_a_dead_server_never_hides_the_failure(make_dovecot, make_mail_user, protocol):
    server = make_dovecot()
    user = make_mail_user(server=server)
    connector_class, account_for = CONNECTORS[protocol]
    with pytest.raises(SyncFailed):
        with connector_class(account_for(server, user)) as connector:
            assert connector.list_folders()
            server.kill()  # LOGOUT / QUIT at the end of ``with`` finds no server
            raise SyncFailed("the sync's own error")
    with pytest.raises(ConnectorError) as gone:
        connector.client  # noqa: B018
    assert gone.value.code == "not_connected"
