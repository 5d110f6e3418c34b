"""Tests for ``sync.mail.correlation``: subjects and the order of correlation keys (the keys
themselves, tokens and Thread-Index, are ``tests/test_mailkeys.py``'s)."""
from __future__ import annotations

import pytest

from server.mailkeys import conversation_id
from server.sync.mail.correlation import correlation_keys, normalize_subject, smart_match_key
from tests.test_mailkeys import ROOT_INDEX, reply_index

# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize("subject, normalized", [
    ("RE: FW: AW: Quote", "quote"),
    ("Re[2]: SV: WG: TR: RV: Fwd: VS: Antw: Deal CRM:0001234", "deal"),
    ("Re(3): re：  Contoso   deal", "contoso deal"),
    ("Regarding our call", "regarding our call"),
    ("Re: Re: ", ""),
    (None, ""),
])
def test_normalize_subject(subject, normalized):
    assert normalize_subject(subject) == normalized


def test_smart_match_key_is_order_and_case_insensitive():
    one = smart_match_key("RE: Contoso deal", ["B@x.example", "a@y.example"])
    two = smart_match_key("Contoso Deal", ["a@y.example", "b@x.example", "a@y.example"])
    assert one == two == "contoso deal|a@y.example,b@x.example"
    assert smart_match_key("Re:", ["a@y.example"]) is None


# --------------------------------------------------------------------------- key order


def test_correlation_keys_follow_the_dynamics_order(mail):
    msg = mail(headers={"Subject": "RE: Quote CRM:0001234", "Message-ID": "<self@customer.example>"},
               extra=[("In-Reply-To", "<parent@org.example>"),
                      ("References", "<root@org.example> <middle@org.example> <parent@org.example> "
                                     "<self@customer.example>"),
                      ("Thread-Index", reply_index())])
    keys = correlation_keys(msg, smart_matching=True)
    assert keys == [
        ("in_reply_to", "parent@org.example"),
        ("references", "middle@org.example"),
        ("references", "root@org.example"),
        ("tracking_token", "CRM:0001234"),
        ("conversation_index", conversation_id(ROOT_INDEX)),
        ("smart_match", "quote|ann@customer.example,bob@org.example"),
    ]


def test_smart_matching_is_off_by_default(mail):
    assert correlation_keys(mail(headers={"Subject": "Re: Quote"})) == []


def test_conversation_starter_has_no_conversation_key(mail):
    msg = mail(extra=[("Thread-Index", ROOT_INDEX)])
    assert all(method != "conversation_index" for method, _ in correlation_keys(msg))


def test_custom_token_prefix(mail):
    msg = mail(headers={"Subject": "Re: offer TKT-00042"})
    assert correlation_keys(msg, prefix="TKT-") == [("tracking_token", "TKT-00042")]
