"""Subjects in the users' languages: reply and forward prefixes as localized mail clients
write them (nested, repeated, counted, bracketed, with full-width colons) are recognized on
every path that compares subjects: correlation (the tracking token still found), smart
matching (the same key as the original), composing an answer (one "RE:", never stacked);
and localized out-of-office subjects without Auto-Submitted read as automatic replies.
Generated over combinations, not listed by example."""
from __future__ import annotations

from email.header import Header

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.crm.replies import base_subject, subject_for
from server.mailkeys import REPLY_PREFIXES, find_token, strip_reply_prefixes
from server.sync.mail.automatic import AUTO_REPLY_SUBJECTS, auto_reply_evidence
from server.sync.mail.correlation import (SMART_MATCH, TRACKING_TOKEN, correlation_keys,
                                          normalize_subject, smart_match_key)
from server.sync.mail.message import parse

from .conftest import build_raw
from .test_mime_equivalence import PROPERTY

WORDS = sorted({w for words in REPLY_PREFIXES.values() for w in words})
CASES = (str, str.upper, str.lower, str.title)
COUNTS = ("", "[2]", "(3)", "^2", " [12]")
COLONS = (":", "：", " :", "﹕")
SPACES = ("", " ", "  ", "\u3000")

PREFIX = st.builds(lambda word, case, count, colon, space: f"{case(word)}{count}{colon}{space}",
                   st.sampled_from(WORDS), st.sampled_from(CASES), st.sampled_from(COUNTS),
                   st.sampled_from(COLONS), st.sampled_from(SPACES))
# Base subjects in the six languages (and plain ASCII), never starting with a prefix.
BASE = st.one_of(
    st.sampled_from(["Quote for 200 licences", "Nabídka na 200 licencí", "200 个许可证的报价",
                     "Offert på 200 licenser", "Ponudba za 200 licenc", "Árajánlat 200 licencre",
                     "Results: Q3", "Ref: PO 4411", "Invoice 2024-03"]),
    st.text(st.characters(categories=("L", "N"), max_codepoint=0x9FFF), min_size=1, max_size=20),
).map(str.strip).filter(lambda s: s and strip_reply_prefixes(s) == s)
TOKEN = st.integers(0, 10**7 - 1).map(lambda n: f"CRM:{n:07d}")


@st.composite
def answered(draw) -> tuple[str, str, str | None]:
    """(the subject of an answer, the original's subject, its token or None)."""
    base = draw(BASE)
    token = draw(st.one_of(st.none(), TOKEN))
    original = f"{base} {token}" if token else base
    subject = original
    for prefix in draw(st.lists(PREFIX, min_size=1, max_size=5)):
        subject = prefix + subject
        if draw(st.integers(0, 5)) == 0:  # an old client's forward: "[Fwd: ...]"
            subject = f"[Fwd: {subject}]"
    return subject, original, token


def _message(subject: str):
    encoded = Header(subject, "utf-8").encode() if not subject.isascii() else subject
    return parse(build_raw(headers={"Subject": encoded}))


@PROPERTY
@given(answered())
def test_every_prefix_form_comes_off_and_leaves_the_subject_as_written(case):
    subject, original, _ = case
    assert strip_reply_prefixes(subject) == original
    assert base_subject(subject) == original


@PROPERTY
@given(answered())
def test_the_correlation_path_finds_the_token_inside_localized_prefixes(case):
    subject, original, token = case
    msg = _message(subject)
    assert " ".join(strip_reply_prefixes(msg.subject).split()) == " ".join(original.split())
    keys = dict(correlation_keys(msg, smart_matching=True))
    assert keys.get(TRACKING_TOKEN) == token
    assert find_token(subject) == token


@PROPERTY
@given(answered(), st.lists(st.sampled_from(["ann@customer.example", "bob@org.example"]), min_size=1))
def test_smart_matching_gives_the_answer_the_original_key(case, people):
    subject, original, _ = case
    assert normalize_subject(subject) == normalize_subject(original)
    assert smart_match_key(subject, people) == smart_match_key(original, people)
    msg_key = dict(correlation_keys(_message(subject), smart_matching=True)).get(SMART_MATCH)
    assert msg_key == smart_match_key(original, ["ann@customer.example", "bob@org.example"])


@PROPERTY
@given(answered(), st.sampled_from(["reply", "reply_all", "forward"]))
def test_answering_writes_one_prefix_however_many_the_subject_had(case, mode):
    subject, original, _ = case
    answer = subject_for(mode, subject)
    assert answer == ("FW: " if mode == "forward" else "RE: ") + original
    assert subject_for(mode, answer) == answer  # answering the answer does not stack


PHRASES = sorted({p for phrases in AUTO_REPLY_SUBJECTS.values() for p in phrases})


@PROPERTY
@given(st.sampled_from(PHRASES), st.sampled_from(CASES), st.sampled_from([": ", "：", " - ", " "]), BASE)
def test_localized_out_of_office_subjects_are_automatic_replies(phrase, case, joint, base):
    msg = _message(f"{case(phrase)}{joint}{base}")
    assert auto_reply_evidence(msg) == "its subject is an automatic reply's"


@pytest.mark.parametrize("subject", [
    "Automatická fakturace", "自动化测试报告", "Automatisk backup klar", "Odsotnost na sestanku?",
    "Házon belüli képzés", "Out of stock: item 42", "Auto parts quote",
])
def test_a_persons_subject_near_those_words_is_not_automatic(subject):
    assert auto_reply_evidence(_message(subject)) is None
