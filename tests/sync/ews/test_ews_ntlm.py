"""EWS with NTLM: the fake Exchange endpoint offers NTLM and verifies it for real with
pyspnego's NTLM acceptor (a credential file of its users named by ``NTLM_USER_FILE``, the
three legs on one kept-alive connection); exchangelib signs in with requests-ntlm. A mailbox
whose profile says NTLM syncs, and a wrong password turns it off with the sign-in alert."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert
from tests.sync import world as w
from tests.sync.ews.test_ews_engine import EwsStore, tracks_a_customer_email


@pytest.fixture
def ntlm(exchange, tmp_path, monkeypatch):
    monkeypatch.setenv("NTLM_USER_FILE", str(exchange.ntlm_user_file(tmp_path)))
    return exchange


class NtlmStore(EwsStore):
    def profile_fields(self) -> dict:
        return {"outgoing_protocol": "ews",
                "settings": {"ews_url": self.exchange.url, "auth_type": "ntlm"}}


def test_a_mailbox_signing_in_with_ntlm_syncs(crm, ntlm):
    store = NtlmStore(ntlm)
    tracks_a_customer_email(crm, store, "ntlm@x.example")
    assert ntlm.ntlm_sign_ins and set(ntlm.ntlm_sign_ins) == {"ORG\\bob"}


def test_a_wrong_ntlm_password_disables_the_mailbox_with_the_sign_in_alert(crm, ntlm):
    store = NtlmStore(ntlm)
    box = w.store_mailbox(store, crm.bob)
    box.password = "not-the-password"
    db.session.commit()
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled and result.error_code == "auth_failed"
    assert not box.enabled and not ntlm.ntlm_sign_ins
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))
    assert "refused the password for ORG\\bob" in alert.message
    assert "not-the-password" not in alert.message


def test_a_profile_changed_from_basic_to_ntlm_signs_in_with_ntlm_at_once(crm, ntlm):
    """exchangelib keeps one protocol per URL and credentials, whatever the sign-in kind:
    after a run with Basic, the same worker process must not go on with Basic once the
    profile says NTLM (nor with NTLM after it says Basic)."""
    store = EwsStore(ntlm)  # Basic, which this server accepts too
    box = tracks_a_customer_email(crm, store, "basic-first@x.example")
    assert ntlm.ntlm_sign_ins == []
    box.server_profile.settings = {**box.server_profile.settings, "auth_type": "ntlm"}
    db.session.commit()
    store.deliver(w.raw(sender="Ann Customer <ann@customer.example>", mid="ntlm-next@x.example"))
    assert sync_mailbox(box.id).status == "success"
    assert w.tracked("ntlm-next@x.example")
    assert set(ntlm.ntlm_sign_ins) == {"ORG\\bob"}
    signed_in = len(ntlm.ntlm_sign_ins)
    box.server_profile.settings = {**box.server_profile.settings, "auth_type": "basic"}
    db.session.commit()
    store.deliver(w.raw(sender="Ann Customer <ann@customer.example>", mid="basic-again@x.example"))
    assert sync_mailbox(box.id).status == "success"
    assert w.tracked("basic-again@x.example") and len(ntlm.ntlm_sign_ins) == signed_in
