"""The email-to-case chain, pure: generated rule lists are decided as "the first rule whose
conditions all hold", with a hit per condition tried; automatic mail never meets "not
automatic"; replies go to their case, resolved ones by the rule and its window; case
numbers are found in any subject and written into an acknowledgement's subject once;
business hours hold exactly on their days and hours in their zone."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.engine.case_ack import ack_subject
from server.sync.mail.case_rules import (CONDITIONS, BusinessHours, CaseContext, ExistingCase,
                                         RuleSpec, case_numbers, decide_case)
from tests.sync.conftest import build_raw
from server.sync.mail.message import parse

WHEN = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)  # a Tuesday


def message(subject="Printer broken", sender="dana@newco.example", body="It smokes.",
            extra=None):
    return parse(build_raw(body, {"Subject": subject, "From": sender}, extra))


# Conditions with values that can hold or not for the messages below.
CONDITION_CHOICES = [("sender_known", ""), ("sender_unknown", ""),
                     ("sender_domain", "newco.example"), ("sender_domain", "other.example"),
                     ("subject_contains", "printer"), ("subject_contains", "invoice"),
                     ("body_contains", "smokes"), ("has_attachments", ""),
                     ("business_hours", "mon-fri 09:00-17:00 UTC"),
                     ("outside_business_hours", "mon-fri 09:00-17:00 UTC"),
                     ("not_automatic", "")]
rule_lists = st.lists(st.lists(st.sampled_from(CONDITION_CHOICES), max_size=3), max_size=5)
messages = st.sampled_from([
    message(), message(subject="Invoice 42", sender="x@other.example"),
    message(subject="Automatic reply: away", extra=[("Auto-Submitted", "auto-replied")])])


@settings(max_examples=200, deadline=None)
@given(rule_lists, messages, st.booleans())
def test_the_first_rule_whose_conditions_all_hold_decides(conditions, msg, known):
    rules = [RuleSpec(n + 1, f"r{n}", tuple(c)) for n, c in enumerate(conditions)]
    ctx = CaseContext(sender_known=known, received_at=WHEN)
    decision = decide_case(msg, ctx, rules)
    holding = [r for r in rules
               if all(CONDITIONS[k].holds(msg, ctx, v) for k, v in r.conditions)]
    if holding:
        assert decision.action == "create" and decision.rule_id == holding[0].id
        assert f'Case rule "{holding[0].name}" applies' in decision.reason
    else:
        assert decision.action == "none" and decision.rule_id is None
    # Every condition tried is a hit, up to and including the deciding rule's.
    tried = [h for h in decision.hits if h[0].count(":") == 2]
    assert all(name.startswith("case:r") for name, _ in tried)
    if holding:
        assert (f"case:{holding[0].name}", True) == decision.hits[-1]


def test_automatic_mail_never_meets_not_automatic():
    rule = [RuleSpec(1, "Person", (("not_automatic", ""),))]
    for extra in ([("Auto-Submitted", "auto-replied")], [("Precedence", "bulk")],
                  [("X-Auto-Response-Suppress", "All")], [("X-Regarding-Loop", "1")],
                  [("List-Id", "<news.example>")]):
        decision = decide_case(message(extra=extra), CaseContext(), rule)
        assert decision.action == "none" and "sent automatically" in decision.reason


def test_our_own_mail_never_opens_or_changes_a_case_whatever_the_rules_take():
    rules = [RuleSpec(1, "Anything", ())]
    existing = ExistingCase(7, "CAS-00007-ABCDEF", "in_progress", None, "the conversation")
    for ctx in (CaseContext(own_mail="support2@org.example is one of this organization's "
                                     "mailboxes and Auto-Submitted: auto-replied"),
                CaseContext(own_mail="its sender is this queue's own address", existing=existing)):
        decision = decide_case(message(), ctx, rules)
        assert decision.action == "none" and decision.hits == (("case:own_mail", True),)
        assert "never opens or changes a case" in decision.reason
    assert decide_case(message(), CaseContext(), rules).action == "create"


def _reply(status: str, resolved_days: int | None, on_resolved: str = "reopen"):
    resolved = WHEN - timedelta(days=resolved_days) if resolved_days is not None else None
    case = ExistingCase(7, "CAS-00007-ABCDEF", status, resolved, "the conversation")
    rule = [RuleSpec(1, "Any", (), on_resolved, 7)]
    return decide_case(message(), CaseContext(received_at=WHEN, existing=case), rule)


def test_replies_go_to_their_case_by_its_state_the_rule_and_the_window():
    assert _reply("in_progress", None).action == "update"
    assert _reply("resolved", 3).action == "reopen"
    assert _reply("resolved", 8).action == "follow_up"
    assert _reply("resolved", 3, "new_case").action == "follow_up"
    assert _reply("canceled", 1).action == "follow_up"
    assert all(_reply(s, 1).case_id == 7 for s in ("in_progress", "resolved", "canceled"))


numbers = st.builds(lambda n, tail: f"CAS-{n:05d}-{tail}", st.integers(0, 99999),
                    st.text("0123456789ABCDEF", min_size=6, max_size=6))
words = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@settings(max_examples=200, deadline=None)
@given(numbers, words, words)
def test_a_case_number_is_found_anywhere_and_written_once(number, before, after):
    subject = f"{before} {number} {after}"
    assert number in case_numbers(subject)
    once = ack_subject(before, number)
    assert once.upper().count(number) == 1
    assert ack_subject(once, number) == " ".join(once.split())  # never twice
    assert case_numbers(f"RE: [{number}] x") == [number]


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                    timezones=st.just(timezone.utc)),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]))
def test_business_hours_hold_on_their_days_and_hours_in_their_zone(moment, zone):
    hours = BusinessHours.parse(f"mon-fri 09:00-17:30 {zone}")
    local = moment.astimezone(ZoneInfo(zone))
    expected = local.weekday() < 5 and (9, 0) <= (local.hour, local.minute) < (17, 30)
    assert hours.contains(moment) is expected
    weekend = BusinessHours.parse(f"sat-sun 00:00-23:59 {zone}")
    assert weekend.contains(moment) is (local.weekday() >= 5 and
                                        (local.hour, local.minute) < (23, 59))
