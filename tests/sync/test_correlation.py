"""Tests for ``sync.mail.correlation``: tracking tokens, Thread-Index, subjects, key order."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from server.sync.mail.correlation import (
                                          add_token,
                                          conversation_id,
                                          correlation_keys,
                                          decode_thread_index,
                                          find_token,
                                          make_token,
                                          normalize_subject,
                                          smart_match_key,
                                          strip_token,
                                          )

# A real Outlook header (from the corpus), sent 2009-10-30 19:07 UTC.
ROOT_INDEX = "AcpZlFLF/Y9EfcC0QZKKEuUFm2Snqw=="


def reply_index(root: str = ROOT_INDEX, blocks: int = 1) -> str:
    return base64.b64encode(base64.b64decode(root) + b"\x00\x01\x02\x03\x04" * blocks).decode()


# --------------------------------------------------------------------------- tokens


def test_make_token():
    assert make_token(1234) == "CRM:0001234"
    assert make_token(7, prefix="TKT-", digits=3) == "TKT-007"
    with pytest.raises(ValueError):
        make_token(-1)


@pytest.mark.parametrize("subject, token", [
    ("Re: Quote for 20 seats CRM:0001234", "CRM:0001234"),
    ("CRM:0001234", "CRM:0001234"),
    ("RE: [crm:0001234] quote", "CRM:0001234"),
    ("Quote XCRM:0001234", None),
    ("Quote CRM:", None),
    ("Quote CRM: 0001234", None),
    ("", None),
    (None, None),
])
def test_find_token(subject, token):
    assert find_token(subject) == token


def test_find_token_with_custom_prefix():
    assert find_token("Re: offer TKT-00042", prefix="TKT-") == "TKT-00042"
    assert find_token("Re: offer CRM:0001", prefix="TKT-") is None


@pytest.mark.parametrize("subject, expected", [
    ("Re: Quote CRM:0001234", "Re: Quote"),
    ("[CRM:0001234] Quote", "Quote"),
    ("Quote (CRM:0001234) for you", "Quote for you"),
    ("No token here", "No token here"),
])
def test_strip_token(subject, expected):
    assert strip_token(subject) == expected


def test_add_token_appends_once_and_replaces_a_stale_token():
    assert add_token("Quote", "CRM:0001234") == "Quote CRM:0001234"
    assert add_token("Quote CRM:0001234", "CRM:0001234") == "Quote CRM:0001234"
    assert add_token("Quote CRM:0000001", "CRM:0001234") == "Quote CRM:0001234"
    assert add_token("", "CRM:0001234") == "CRM:0001234"


# --------------------------------------------------------------------------- Thread-Index


def test_decode_thread_index_header():
    index = decode_thread_index(ROOT_INDEX)
    assert index is not None
    assert index.child_blocks == 0
    assert index.conversation_guid == base64.b64decode(ROOT_INDEX)[6:22]
    assert len(index.conversation_id) == 32
    assert index.created is not None
    assert abs(index.created - datetime(2009, 10, 30, 19, 7, tzinfo=timezone.utc)).total_seconds() < 600


def test_reply_keeps_conversation_and_counts_child_blocks():
    reply = decode_thread_index(reply_index(blocks=2))
    assert reply is not None and reply.child_blocks == 2
    assert reply.conversation_id == conversation_id(ROOT_INDEX)


@pytest.mark.parametrize("value", [
    None, "", "not base64 !!!", base64.b64encode(b"short").decode(),
    base64.b64encode(b"\x01" * 23).decode(),  # 22 + 1: not a whole child block
])
def test_invalid_thread_index(value):
    assert decode_thread_index(value) is None
    assert conversation_id(value) is None


def test_thread_index_tolerates_whitespace_and_missing_padding():
    assert conversation_id(" AcpZlFLF/Y9EfcC0\r\n QZKKEuUFm2Snqw ") == conversation_id(ROOT_INDEX)


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
