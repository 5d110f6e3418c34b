"""Reply, reply all and forward (pure): one RE:/FW: however many prefixes (generated), the
recipients of each mode without ourselves or duplicates, and the quoted original escaped."""
from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from server.crm.replies import (Person, base_subject, quoted, recipients_for, strip_token,
                                subject_for)

PREFIXES = st.sampled_from(["RE:", "Re:", "re :", "FW:", "Fwd:", "AW:", "WG:", "SV:", "TR:",
                            "RE[2]:", "Re(3):", "Antw:", "RV:", "Odp:", " re: "])
BASE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30) \
    .map(str.strip).filter(lambda s: base_subject(s) == s)


@given(prefixes=st.lists(PREFIXES, max_size=6), base=BASE,
       mode=st.sampled_from(["reply", "reply_all", "forward"]))
def test_prefixes_never_stack(prefixes, base, mode):
    subject = " ".join(prefixes + [base])
    answer = subject_for(mode, subject)
    assert answer == ("FW: " if mode == "forward" else "RE: ") + base
    assert subject_for(mode, answer) == answer  # answering the answer: still one prefix


def test_words_that_look_like_prefixes_stay():
    assert base_subject("Results: Q3") == "Results: Q3"
    assert base_subject("Re: Recap: the plan") == "Recap: the plan"
    assert subject_for("reply", None) == "RE: "


def test_forward_drops_this_organizations_token_only():
    assert strip_token("FW: Quote CRM:0012345 ACME:0000001", "CRM:") == "FW: Quote ACME:0000001"
    assert strip_token("Quote", "") == "Quote"


ME = {"sam@contoso.example"}
ANN, BO, CY = (Person("Ann", "ann@customer.example"), Person("", "bo@customer.example"),
               Person("Cy", "cy@customer.example"))
SAM = Person("Sam", "Sam@Contoso.example")


def test_reply_modes_to_a_received_email():
    args = dict(sender=ANN, to=[SAM, BO], cc=[CY, ANN], me=ME)
    assert recipients_for("reply", **args) == ([ANN], [])
    assert recipients_for("reply_all", **args) == ([ANN, BO], [CY])
    assert recipients_for("forward", **args) == ([], [])


def test_reply_to_an_email_we_sent_goes_to_its_recipients():
    args = dict(sender=SAM, to=[ANN, BO], cc=[CY], me=ME)
    assert recipients_for("reply", **args) == ([ANN, BO], [])
    assert recipients_for("reply_all", **args) == ([ANN, BO], [CY])


def test_the_quote_escapes_the_header_and_keeps_the_stored_body():
    html = quoted("reply", sender=Person("<b>Ann</b>", "ann@customer.example"),
                  sent=datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), subject="a < b",
                  to=[SAM], body_html=None, body_text="line <1>\nline 2")
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html and "a &lt; b" in html
    assert "2026-01-02 03:04 UTC" in html
    assert "<blockquote><pre>line &lt;1&gt;\nline 2</pre></blockquote>" in html
