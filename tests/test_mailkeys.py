"""Tests for ``server.mailkeys``, the one rule for each email key: Message-IDs, addresses,
Thread-Index conversation ids and tracking tokens. Property tests (hypothesis) hold that
every normalization is idempotent and that the forms real mail writes a key in (angle
brackets, comments, case, folding whitespace, IDNA domains, quoted local parts) all give
the key tracking stores, as the sync engine's parser and the add-in read it."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.crm.services.tracking import EmailContent
from server.mailkeys import (add_token, conversation_id, decode_thread_index, find_token,
                             in_reply_to_id, make_token, normalize_address, normalize_message_id,
                             strip_token)
from server.sync.mail.message import parse
from tests.sync.conftest import build_raw

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


# --------------------------------------------------------------------------- Message-ID


def test_message_id_normalized():
    assert normalize_message_id("AbC@X.Y") == "AbC@x.y"
    assert normalize_message_id("<1234   @   local(blah)  .machine .example>") == \
        "1234@local.machine.example"
    assert normalize_message_id("   ") is None
    assert normalize_message_id(None) is None


@pytest.mark.parametrize("raw, expected", [
    ("<A1@Fabrikam.Example>", "A1@fabrikam.example"),
    ("<a1@x.example> (Ann's message)", "a1@x.example"),
    ("<a1@x.example> <a2@x.example>", "a1@x.example"),
    ("<a1((nested) comment)@x.example>", "a1@x.example"),
    ("<<a1@x.example>>", "a1@x.example"),
    ("<>", None),
])
def test_message_id_forms(raw, expected):
    assert normalize_message_id(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("<Parent@Example.COM> (Ann's message)", "Parent@example.com"),
    ("parent@example.com", "parent@example.com"),
    ("your message of Tuesday", None),
    ("   ", None),
    (None, None),
])
def test_in_reply_to_id(raw, expected):
    assert in_reply_to_id(raw) == expected


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize("raw, expected", [
    (" John@EXAMPLE.com ", "john@example.com"),
    ("<a@b.example>", "a@b.example"),
    ("user@bücher.example", "user@xn--bcher-kva.example"),
    ("user@Example.com.", "user@example.com"),
    ('"big bug"@bug.example', '"big bug"@bug.example'),
    ("@relay.example:user@host.example", "user@host.example"),
    ("Ann@Contoso.TEST", "ann@contoso.test"),
    ("  ann@contoso.test \n", "ann@contoso.test"),
    ("<ann@contoso.test>", "ann@contoso.test"),
    ("mailto:ann@contoso.test", "ann@contoso.test"),
    ("MAILTO:Ann@Contoso.test", "ann@contoso.test"),
    ("<mailto:ann@contoso.test>", "ann@contoso.test"),
    ("mailto:<ann@contoso.test>", "ann@contoso.test"),
    ("Ann Smith <Ann@Contoso.test>", "ann@contoso.test"),
    ('"Smith, Ann" <ann@contoso.test>', "ann@contoso.test"),
    ("ann@contoso.test.", "ann@contoso.test"),
    ("ann@bücher.example", "ann@xn--bcher-kva.example"),
    ("ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
    ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
    # IDNA 2008, as mail clients write it: "straße" is not "strasse".
    ("ann@straße.example", "ann@xn--strae-oqa.example"),
    # Names IDNA 2008 refuses (symbols) still resolve, by IDNA 2003.
    ("ann@i❤.example", "ann@xn--i-7iq.example"),
    # Quotes only where needed; dots as real mail has them (RFC 5322 or not).
    ('"Ann"@contoso.test', "ann@contoso.test"),
    ("ann..smith.@docomo.example", "ann..smith.@docomo.example"),
])
def test_normalize_address(raw, expected):
    assert normalize_address(raw) == expected


@pytest.mark.parametrize("raw", [
    None, "", "   ", "ann", "no-at-sign", "@contoso.test", "@example.com", "ann@", "user@",
    "a@b@c", "ann smith@contoso.test", "two words@example.com", "ann@con toso.test", "<>",
    "mailto:", "Undisclosed-Recipient:@mailman.example;", "ann\x00@contoso.test",
    "ann@-contoso.test", "ann(x)@contoso.test", '"ann@contoso.test',
])
def test_normalize_address_refuses_what_is_not_an_address(raw):
    assert normalize_address(raw) is None


# --------------------------------------------------------------------------- properties

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(_ATEXT, min_size=1, max_size=12)
dot_atoms = st.lists(_atoms, min_size=1, max_size=3).map(".".join)
_ascii_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_unicode_labels = st.sampled_from(["bücher", "mächine", "straße", "παράδειγμα", "例え", "xn--bcher-kva",
                                   "δοκιμή", "テスト", "münchen"])
domains = st.lists(st.one_of(_ascii_labels, _unicode_labels), min_size=1, max_size=3).map(".".join)
comments = st.text("abcdefg ()", max_size=10).map(lambda t: f"({t.replace('(', '').replace(')', '')})")
blanks = st.sampled_from(["", " ", "  ", "\t", "\r\n "])


def _vary_case(draw, text: str) -> str:
    """ASCII letters in random case (Unicode case would change an IDNA 2008 name: ß, SS)."""
    flags = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip and c.isascii() else c for c, flip in zip(text, flags))


@st.composite
def message_ids(draw):
    """``(key, written)``: a Message-ID's key and one way a header or a client writes it."""
    local, domain = draw(dot_atoms), draw(st.one_of(_ascii_labels, dot_atoms.map(str.lower)))
    key = f"{local}@{domain}"
    at = draw(st.sampled_from(["@", " @ ", "(c)@", "@ "]))
    inside = f"{draw(blanks).strip(chr(13) + chr(10))}{local}{at}{_vary_case(draw, domain)}"
    written = f"{draw(blanks)}<{inside}>{draw(st.one_of(st.just(''), comments))}{draw(blanks)}"
    return key, written.strip("\r\n")


@st.composite
def addresses(draw):
    """``(key, written)``: an address's key and one way a header, a form or a client writes it."""
    quoted = draw(st.booleans())
    local = f'"{draw(st.text(_ATEXT + " .@,", min_size=1, max_size=10))}"' if quoted else draw(dot_atoms)
    inner = local.strip('"')
    plain = set(inner) <= set(_ATEXT + ".")
    domain = draw(domains)
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        ascii_domain = None
    if ascii_domain is None or len(ascii_domain) > 200:
        domain, ascii_domain = "example.test", "example.test"
    key = f"{(inner if plain else local).lower()}@{ascii_domain}"  # '"ann"@x' is 'ann@x'
    spec = f"{_vary_case(draw, local)}@{_vary_case(draw, domain)}{draw(st.sampled_from(['', '.']))}"
    form = draw(st.sampled_from(["{}", "<{}>", "mailto:{}", "<mailto:{}>", "Ann Smith <{}>",
                                 '"Smith, Ann" <{}>']))
    return key, spec, f"{draw(blanks)}{form.format(spec)}{draw(blanks)}".strip("\r\n")


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_message_id_normalization_is_idempotent_on_any_text(value):
    once = normalize_message_id(value)
    assert normalize_message_id(once) == once


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_address_normalization_is_idempotent_on_any_text(value):
    once = normalize_address(value)
    assert normalize_address(once) == once


@settings(max_examples=200)
@given(message_ids())
def test_every_written_message_id_gives_the_key_tracking_stores(case):
    """The form a header, the pane or an API client writes gives one key: what tracking stores
    (``EmailContent.identity``), what the sync engine parses, what the add-in looks up."""
    key, written = case
    assert normalize_message_id(written) == key
    assert normalize_message_id(key) == key
    stored = EmailContent(message_id=written, subject="", from_=None).identity
    parsed = parse(build_raw(headers={"Message-ID": written})).message_id
    assert stored == parsed == key


@settings(max_examples=200)
@given(addresses())
def test_every_written_address_gives_the_key_resolution_looks_up(case):
    """A contact's address as a form stores it, an address as a mail header carries it and as
    the pane sends it: one key."""
    key, spec, written = case
    assert normalize_address(written) == normalize_address(spec) == key
    assert normalize_address(key) == key
    parsed = parse(build_raw(headers={"From": f"Ann Smith <{spec}>"})).from_
    assert parsed is not None and parsed.address == key


# --------------------------------------------------------------------------- tokens and Thread-Index


@given(st.integers(min_value=0, max_value=10**7 - 1), st.sampled_from(["CRM:", "TKT-", "Ref#"]),
       st.text(max_size=20))
def test_a_made_token_is_found_in_any_subject_it_is_added_to(number, prefix, subject):
    token = make_token(number, prefix)
    tagged = add_token(subject, token, prefix)
    assert find_token(tagged, prefix) == token
    assert find_token(tagged.upper(), prefix) == token
    assert find_token(strip_token(tagged, prefix), prefix) is None
