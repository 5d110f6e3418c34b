"""The second run over an unchanged IMAP mailbox reads nothing whole (issue 12, point 3):
Dovecot's bytes are counted by a proxy between the engine and the server
(``tests/servers/counting_proxy.py``), for the default tracking option (header first) and
for "all" (every message whole on the first run)."""
from __future__ import annotations

import pytest

from server.db import db
from server.sync.engine.run import sync_mailbox
from tests.servers.counting_proxy import CountingProxy
from tests.sync import world as w


class ProxiedStore(w.ImapStore):
    """A Dovecot user read over IMAP through a counting proxy."""

    def __init__(self, server, user, proxy: CountingProxy):
        super().__init__(server, user)
        self.proxy = proxy

    def profile_fields(self) -> dict:
        return {**super().profile_fields(), "incoming_host": self.proxy.host,
                "incoming_port": self.proxy.port}


@pytest.mark.parametrize("option", ["crm_responses", "all"])
def test_the_second_run_over_an_unchanged_mailbox_reads_nothing_whole(crm, dovecot, mail_user,
                                                                       option):
    with CountingProxy(dovecot.host, dovecot.imap_port) as proxy:
        store = ProxiedStore(dovecot, mail_user, proxy)
        box = w.store_mailbox(store, crm.bob, tracking_option=option)
        w.track_earlier(crm, mid="original@org.example")
        for n in range(6):  # replies to CRM mail: tracked under either option
            store.deliver(w.raw(mid=f"second-{n}@customer.example", subject=f"RE: Quote {n}",
                                In_Reply_To="<original@org.example>"))
        first = sync_mailbox(box.id)
        assert first.status == "success" and first.tracked == 6
        read = proxy.reset()
        assert read.whole_messages == 6 and read.whole_bytes > 0  # the proxy sees them
        db.session.expire_all()
        second = sync_mailbox(box.id)
        assert second.status == "success" and second.tracked == 0
        again = proxy.reset()
    assert (again.whole_messages, again.whole_bytes) == (0, 0)
