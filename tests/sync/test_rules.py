"""Tests for ``server.sync.mail.rules``: the tracking decision chain."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.mail.message import MailMessage, parse
from server.sync.mail.decision import (LOOP_HEADER, Decision, DecisionContext, Direction, Folder,
                                       FolderRole, OwnerKind, RuleHit, TrackingOption)
from server.sync.mail.rules import CHAIN, Chain, Rule, chain_description, decide
from tests.sync.conftest import build_raw

OWNER = "bob@org.example"
CUSTOMER = "ann@customer.example"
TRACKED = Folder(FolderRole.TRACKED, "Inbox/Contoso deal", ("opportunity", 42))
CHAIN_NAMES = [rule.name for rule in CHAIN]


def run(msg: MailMessage, **context: Any) -> Decision:
    """Decide with a user mailbox owned by bob@org.example, and check the decision's shape."""
    context.setdefault("owner_addresses", {OWNER})
    decision = decide(msg, DecisionContext(**context))
    assert decision.reason and decision.reason.endswith(".")
    assert decision.hits[-1] == RuleHit(decision.rule, True)
    assert not any(hit.matched for hit in decision.hits[:-1])
    assert [hit.name for hit in decision.hits] == CHAIN_NAMES[:len(decision.hits)]
    if not decision.track:
        assert decision.regarding is None and not decision.regarding_wins
    return decision


@pytest.fixture
def newsletter(mail):
    return mail(headers={"From": "news@shop.example", "Subject": "Spring sale"},
                extra=[("List-Unsubscribe", "<mailto:unsub@shop.example>"), ("Precedence", "bulk")])


@pytest.fixture
def bounce(mail):
    return mail(headers={"From": "MAILER-DAEMON@mx.example", "Subject": "Undelivered Mail Returned to Sender"})


@pytest.fixture
def out_of_office(mail):
    return mail(headers={"Subject": "Automatic reply: Quote"},
                extra=[("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")])


# --------------------------------------------------------------------------- the default


def test_plain_incoming_mail_is_not_tracked_by_default(mail):
    decision = run(mail())
    assert decision.track is False
    assert decision.rule == "default"
    assert len(decision.hits) == len(CHAIN)
    assert decision.rule_hits()[0] == {"rule": "untracked-by-user", "matched": False}
    assert decision.rule_hits()[1] == {"rule": "already-tracked", "matched": False}
    assert decision.rule_hits()[-1] == {"rule": "default", "matched": True}
    assert "does not answer an email that is tracked" in decision.reason
    assert '"Email messages in response to Regarding email"' in decision.reason


def test_chain_order_and_descriptions():
    assert CHAIN_NAMES == [
        "untracked-by-user", "already-tracked", "no-sender", "delivery-report", "loop",
        "blocked-sender", "track-request", "tracked-category", "before-process-after", "folder-not-evaluated", "tracked-folder",
        "auto-reply", "bulk-mail", "correlated-reply", "option-all", "option-crm-records",
        "option-email-enabled-records", "option-none", "default",
    ]
    described = chain_description()
    assert [name for name, _, _ in described] == CHAIN_NAMES
    assert all(text and not text.endswith(":") for _, _, text in described)
    assert dict((name, tracks) for name, tracks, _ in described)["tracked-folder"] is True


def test_custom_chain_without_a_match():
    class Never(Rule):
        """Never matches."""

        name = "never"
        track = True

        def matches(self, msg, ctx):
            return False

    decision = decide(object(), DecisionContext(), chain=[Never()])  # type: ignore[arg-type]
    assert decision == Decision(False, (RuleHit("never", False),),
                                "No tracking rule applied to this email, so it is not tracked.")


# --------------------------------------------------------------------------- exclusions


def test_already_tracked_stays_tracked_even_when_bulk(newsletter):
    decision = run(newsletter, already_tracked=True, folder=TRACKED)
    assert (decision.track, decision.rule) == (True, "already-tracked")
    assert decision.regarding == ("opportunity", 42)


def test_message_without_sender_is_not_tracked(mail):
    decision = run(mail(headers={"From": None}), tracking_option=TrackingOption.ALL)
    assert (decision.track, decision.rule) == (False, "no-sender")


def test_bounce_is_never_tracked_not_even_in_a_tracked_folder_or_with_category(bounce):
    assert bounce.is_delivery_report
    decision = run(bounce, folder=TRACKED, has_tracked_category=True,
                   tracking_option=TrackingOption.ALL, is_correlated=True)
    assert (decision.track, decision.rule) == (False, "delivery-report")
    assert "delivery report" in decision.reason


def test_loop_header_is_not_tracked_even_in_a_tracked_folder(mail):
    msg = mail(extra=[(LOOP_HEADER, "regarding.example")])
    decision = run(msg, folder=TRACKED, tracking_option=TrackingOption.ALL)
    assert (decision.track, decision.rule) == (False, "loop")


def test_x_loop_naming_an_org_mailbox_is_a_loop(mail):
    msg = mail(extra=[("X-Loop", "Support@Org.example")])
    assert run(msg, org_addresses={"support@org.example"}).rule == "loop"
    assert run(msg, org_addresses={"sales@org.example"}).rule == "default"


@pytest.mark.parametrize("entry", [CUSTOMER, "customer.example", "@Customer.Example", "*.customer.example"])
def test_blocked_sender_beats_explicit_intent(mail, entry):
    decision = run(mail(), blocklist={entry}, folder=TRACKED, has_tracked_category=True)
    assert (decision.track, decision.rule) == (False, "blocked-sender")
    assert CUSTOMER in decision.reason


def test_blocked_domain_covers_subdomains(mail):
    msg = mail(headers={"From": "ann@mail.customer.example"})
    assert run(msg, blocklist={"@customer.example"}).rule == "blocked-sender"


def test_blocklist_does_not_match_other_domains(mail):
    assert run(mail(), blocklist={"other.example", "tomer.example"}).rule == "default"


def test_outgoing_mail_is_blocked_only_when_every_recipient_is(mail):
    msg = mail(headers={"From": OWNER, "To": "x@blocked.example, y@blocked.example"})
    decision = run(msg, blocklist={"blocked.example"})
    assert decision.rule == "blocked-sender" and "Every recipient" in decision.reason
    mixed = mail(headers={"From": OWNER, "To": "x@blocked.example, ann@customer.example"})
    assert run(mixed, blocklist={"blocked.example"}).rule == "default"


# --------------------------------------------------------------------------- explicit intent


def test_category_tracks_newsletters_old_mail_and_other_folders(newsletter):
    decision = run(newsletter, has_tracked_category=True, tracking_option=TrackingOption.NONE,
                   folder=Folder(FolderRole.OTHER, "Archive"),
                   process_after=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert (decision.track, decision.rule) == (True, "tracked-category")
    assert decision.regarding is None


def test_category_in_tracked_folder_gets_the_folder_regarding(mail):
    decision = run(mail(), has_tracked_category=True, folder=TRACKED)
    assert decision.regarding == ("opportunity", 42) and decision.regarding_wins


def test_tracked_folder_beats_bulk_auto_reply_and_tracking_option(newsletter, out_of_office):
    for msg in (newsletter, out_of_office):
        decision = run(msg, folder=TRACKED, tracking_option=TrackingOption.NONE)
        assert (decision.track, decision.rule) == (True, "tracked-folder")
        assert decision.regarding == ("opportunity", 42)
        assert '"Inbox/Contoso deal"' in decision.reason and "opportunity" in decision.reason


def test_tracked_folder_without_regarding(mail):
    decision = run(mail(), folder=Folder(FolderRole.TRACKED, "Deals"))
    assert decision.track and decision.regarding is None


def test_tracked_folder_respects_process_after(mail):
    decision = run(mail(), folder=TRACKED, process_after=datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert (decision.track, decision.rule) == (False, "before-process-after")
    assert "2024-03-05" in decision.reason and "2024-06-01" in decision.reason


def test_process_after_prefers_the_received_time(mail):
    cutoff = datetime(2024, 6, 1, tzinfo=timezone.utc)
    received = datetime(2024, 7, 1, tzinfo=timezone.utc)
    decision = run(mail(), process_after=cutoff, received_at=received,
                   tracking_option=TrackingOption.ALL)
    assert decision.rule == "option-all"


def test_process_after_with_naive_datetimes_and_no_date(mail):
    assert run(mail(), process_after=datetime(2024, 6, 1)).rule == "before-process-after"
    undated = mail(headers={"Date": None})
    assert run(undated, process_after=datetime(2024, 6, 1)).rule == "default"


@pytest.mark.parametrize("folder, track_sent, evaluated", [
    (Folder(FolderRole.INBOX), False, True),
    (Folder(FolderRole.SENT), True, True),
    (Folder(FolderRole.SENT), False, False),
    (Folder(FolderRole.OTHER, "Archive"), True, False),
])
def test_folders_evaluated(mail, folder, track_sent, evaluated):
    decision = run(mail(), folder=folder, track_sent_items=track_sent,
                   tracking_option=TrackingOption.ALL)
    assert decision.track is evaluated
    assert (decision.rule == "folder-not-evaluated") is (not evaluated)


def test_folder_not_evaluated_reason_names_the_folder(mail):
    decision = run(mail(), folder=Folder(FolderRole.OTHER, "Archive"))
    assert 'the folder "Archive"' in decision.reason


# --------------------------------------------------------------------------- automatic mail


@pytest.mark.parametrize("headers, extra", [
    ({}, [("Auto-Submitted", "auto-replied")]),
    ({}, [("Auto-Submitted", "auto-generated (failure)")]),
    ({}, [("X-Autoreply", "yes")]),
    ({}, [("X-Autorespond", "vacation")]),
    ({}, [("X-Auto-Response-Suppress", "DR, RN, All")]),
    ({}, [("Precedence", "auto_reply")]),
    ({"Subject": "Automatic reply: Quote"}, []),
    ({"Subject": "Out of Office: Quote"}, []),
    ({"Subject": "Abwesenheitsnotiz: Angebot"}, []),
    ({"Subject": "Réponse automatique : Devis"}, []),
])
def test_auto_replies_are_not_tracked(mail, headers, extra):
    decision = run(mail(headers=headers, extra=extra), tracking_option=TrackingOption.ALL)
    assert (decision.track, decision.rule) == (False, "auto-reply")
    assert "sent automatically" in decision.reason


@pytest.mark.parametrize("extra, subject", [
    ([("Auto-Submitted", "no")], "Hello"),
    ([("X-Auto-Response-Suppress", "OOF")], "Hello"),
    ([], "Re: the out of office policy"),
])
def test_not_auto_replies(mail, extra, subject):
    decision = run(mail(headers={"Subject": subject}, extra=extra), tracking_option=TrackingOption.ALL)
    assert decision.rule == "option-all"


@pytest.mark.parametrize("extra", [
    [("Precedence", "bulk")], [("Precedence", "Junk")], [("Precedence", "list")],
    [("List-Id", "<news.shop.example>")], [("List-Unsubscribe", "<https://shop.example/u>")],
])
def test_bulk_mail_is_not_tracked(mail, extra):
    decision = run(mail(extra=extra), tracking_option=TrackingOption.ALL,
                   record_addresses={CUSTOMER})
    assert (decision.track, decision.rule) == (False, "bulk-mail")
    assert "newsletter" in decision.reason and "tracked folder" in decision.reason


def test_out_of_office_answer_to_tracked_mail_is_not_tracked(out_of_office):
    decision = run(out_of_office, is_correlated=True)
    assert decision.rule == "auto-reply"


# --------------------------------------------------------------------------- tracking option


@pytest.mark.parametrize("option", [TrackingOption.ALL, TrackingOption.CRM_RESPONSES,
                                    TrackingOption.FROM_CRM_RECORDS,
                                    TrackingOption.FROM_EMAIL_ENABLED_RECORDS])
def test_correlated_reply_is_tracked_for_every_option_but_none(mail, option):
    decision = run(mail(), is_correlated=True, tracking_option=option)
    assert (decision.track, decision.rule) == (True, "correlated-reply")


def test_option_none_tracks_nothing_automatically(mail):
    decision = run(mail(), is_correlated=True, tracking_option=TrackingOption.NONE,
                   record_addresses={CUSTOMER})
    assert (decision.track, decision.rule) == (False, "option-none")
    assert decision.reason.startswith('Your tracking option is "No email messages"')


def test_option_all(mail):
    decision = run(mail(), tracking_option=TrackingOption.ALL)
    assert (decision.track, decision.rule) == (True, "option-all")
    assert decision.reason == 'Your tracking option is "All email messages", so this email is tracked.'


def test_option_from_crm_records(mail):
    decision = run(mail(), tracking_option=TrackingOption.FROM_CRM_RECORDS,
                   record_addresses={" ANN@Customer.example "})
    assert (decision.track, decision.rule) == (True, "option-crm-records")
    assert f"is from {CUSTOMER}, a lead, contact or account" in decision.reason


def test_email_enabled_record_is_not_enough_for_crm_records_option(mail):
    decision = run(mail(), tracking_option=TrackingOption.FROM_CRM_RECORDS,
                   email_enabled_addresses={CUSTOMER})
    assert (decision.track, decision.rule) == (False, "default")
    assert "its sender is not a lead, contact or account in Regarding" in decision.reason


@pytest.mark.parametrize("known", ["record_addresses", "email_enabled_addresses"])
def test_option_from_email_enabled_records(mail, known):
    decision = run(mail(), tracking_option=TrackingOption.FROM_EMAIL_ENABLED_RECORDS,
                   **{known: {CUSTOMER}})
    assert (decision.track, decision.rule) == (True, "option-email-enabled-records")


def test_unknown_sender_with_email_enabled_option(mail):
    decision = run(mail(), tracking_option=TrackingOption.FROM_EMAIL_ENABLED_RECORDS)
    assert "its sender is not a record in Regarding" in decision.reason


def test_outgoing_mail_matches_on_recipients(mail):
    msg = mail(headers={"From": f"Bob <{OWNER.upper()}>", "To": "ann@customer.example"})
    ctx = DecisionContext(owner_addresses={OWNER})
    assert ctx.direction_of(msg) is Direction.OUTGOING
    decision = run(msg, folder=Folder(FolderRole.SENT), track_sent_items=True,
                   tracking_option=TrackingOption.FROM_CRM_RECORDS, record_addresses={CUSTOMER})
    assert decision.rule == "option-crm-records" and "was sent to ann@customer.example" in decision.reason
    unknown = run(mail(headers={"From": OWNER, "To": "x@y.example"}), folder=Folder(FolderRole.SENT),
                  track_sent_items=True, tracking_option=TrackingOption.FROM_CRM_RECORDS)
    assert "none of its recipients is a lead, contact or account" in unknown.reason


def test_explicit_direction_wins(mail):
    ctx = DecisionContext(owner_addresses={CUSTOMER}, direction=Direction.INCOMING)
    assert ctx.direction_of(mail()) is Direction.INCOMING


def test_queue_wording(mail):
    decision = run(mail(), owner_kind=OwnerKind.QUEUE, owner_addresses={"support@org.example"},
                   tracking_option=TrackingOption.ALL)
    assert decision.reason.startswith("This queue's tracking option")


def test_context_normalizes_address_sets():
    ctx = DecisionContext(owner_addresses=[" Bob@Org.Example ", ""], blocklist=["@Spam.Example"],
                          record_addresses=("A@B.example",))
    assert ctx.owner_addresses == frozenset({"bob@org.example"})
    assert ctx.blocklist == frozenset({"spam.example"})
    assert ctx.record_addresses == frozenset({"a@b.example"})


def test_tracking_option_values_are_stable_strings():
    assert TrackingOption("crm_responses") is TrackingOption.CRM_RESPONSES
    assert [o.value for o in TrackingOption] == [
        "all", "crm_responses", "from_crm_records", "from_email_enabled", "none"]


# --------------------------------------------------------------------------- the user's word


def test_an_email_the_user_untracked_is_not_tracked_again_whatever_else_is_true(mail):
    decision = run(mail(), untracked=True, already_tracked=True, has_tracked_category=True,
                   folder=TRACKED, tracking_option=TrackingOption.ALL, pending_request=True)
    assert (decision.track, decision.rule) == (False, "untracked-by-user")
    assert "You untracked this email" in decision.reason


def test_a_pending_request_beats_the_tracking_option_but_not_a_bounce_or_the_blocklist(
        mail, bounce):
    decision = run(mail(), pending_request=True, tracking_option=TrackingOption.NONE)
    assert (decision.track, decision.rule) == (True, "track-request")
    assert run(bounce, pending_request=True).rule == "delivery-report"
    assert run(mail(), pending_request=True, blocklist={CUSTOMER}).rule == "blocked-sender"


# --------------------------------------------------------------------------- regarding

OPP, ACC, CASE = ("opportunity", 42), ("account", 7), ("case", 3)


def test_the_regarding_is_the_folders_then_the_requests_then_the_conversations(mail):
    offered = dict(request_regarding=ACC, conversation_regarding=CASE, is_correlated=True)
    in_folder = run(mail(), folder=TRACKED, **offered)
    assert (in_folder.regarding, in_folder.regarding_wins) == (OPP, True)
    asked = run(mail(), pending_request=True, **offered)
    assert (asked.rule, asked.regarding, asked.regarding_wins) == ("track-request", ACC, False)
    assert asked.reason.endswith(" It is set regarding the account you chose.")
    reply = run(mail(), is_correlated=True, conversation_regarding=CASE)
    assert (reply.rule, reply.regarding) == ("correlated-reply", CASE)
    assert reply.reason.endswith(" It is set regarding the same case as the conversation.")


def test_an_email_tracked_already_keeps_its_reason_and_a_folder_relinks_it(mail):
    seen = run(mail(), already_tracked=True, conversation_regarding=CASE, is_correlated=True)
    assert seen.reason == "This email is already tracked in Regarding, so it stays tracked."
    assert seen.regarding == CASE and not seen.regarding_wins  # fills an empty regarding only
    same = run(mail(), already_tracked=True, folder=TRACKED, tracked_regarding=OPP)
    assert same.reason == "This email is already tracked in Regarding, so it stays tracked."
    moved = run(mail(), already_tracked=True, folder=TRACKED, tracked_regarding=ACC)
    assert (moved.regarding, moved.regarding_wins) == (OPP, True)
    assert moved.reason == ('This email is already tracked. It is in the tracked folder '
                            '"Inbox/Contoso deal", so it is now set regarding the opportunity '
                            "that folder is linked to.")


def test_a_regarding_the_user_may_not_link_to_is_left_empty_and_the_reason_says_why(mail):
    refused = "You may not link activities to this opportunity."
    decision = run(mail(), folder=TRACKED, regarding_refused=refused)
    assert (decision.track, decision.regarding, decision.regarding_wins) == (True, None, False)
    assert decision.reason.endswith(" It could not be set regarding that opportunity (You may "
                                    "not link activities to this opportunity).")
    moved = run(mail(), already_tracked=True, folder=TRACKED, tracked_regarding=ACC,
                regarding_refused=refused)
    assert moved.reason.startswith("This email is already tracked in Regarding, so it stays")
    assert run(mail(), regarding_refused=refused, tracking_option=TrackingOption.ALL).reason == \
        'Your tracking option is "All email messages", so this email is tracked.'


# --------------------------------------------------------------------------- the registry


def test_a_chain_refuses_two_rules_of_one_name_and_a_rule_without_description():
    class Again(Rule):
        """Also the default."""

        name = "default"
        track = False

    class Silent(Rule):
        name = "silent"
        track = False

    with pytest.raises(ValueError, match="unique.*default"):
        Chain(*CHAIN, Again())
    with pytest.raises(ValueError, match="description.*silent"):
        Chain(Silent())
    assert CHAIN.by_name["track-request"] is CHAIN[CHAIN_NAMES.index("track-request")]


# --------------------------------------------------------------------------- generated


regardings = st.none() | st.tuples(st.sampled_from(["account", "case", "opportunity"]),
                                   st.integers(1, 10**6))


@settings(max_examples=300, deadline=None)
@given(flags=st.fixed_dictionaries({name: st.booleans() for name in (
           "untracked", "pending_request", "already_tracked", "has_tracked_category",
           "is_correlated", "track_sent_items")}),
       option=st.sampled_from(list(TrackingOption)), role=st.sampled_from(list(FolderRole)),
       folder_regarding=regardings, request_regarding=regardings,
       conversation_regarding=regardings, tracked_regarding=regardings,
       refused=st.none() | st.just("Not allowed."), known=st.booleans(), sender=st.sampled_from(
           [CUSTOMER, OWNER, "news@shop.example"]), extra=st.sampled_from(
           [[], [("List-Id", "<l.example>")], [("Auto-Submitted", "auto-replied")]]))
def test_every_decision_is_the_first_matching_rule_with_the_regarding_it_chose(
        flags, option, role, folder_regarding, request_regarding, conversation_regarding,
        tracked_regarding, refused, known, sender, extra):
    msg = parse(build_raw(headers={"From": sender, "To": CUSTOMER if sender == OWNER
                                   else OWNER}, extra=extra))
    ctx = DecisionContext(owner_addresses={OWNER}, tracking_option=option,
                          folder=Folder(role, "Some folder", folder_regarding),
                          request_regarding=request_regarding,
                          conversation_regarding=conversation_regarding,
                          tracked_regarding=tracked_regarding, regarding_refused=refused,
                          record_addresses={CUSTOMER} if known else set(), **flags)
    decision = decide(msg, ctx)
    first = next(rule for rule in CHAIN if rule.matches(msg, ctx))
    assert (decision.rule, decision.track) == (first.name, first.track)
    assert decision.reason.startswith(first.reason(msg, ctx)) and decision.reason.endswith(".")
    offered = (ctx.folder_regarding, request_regarding, conversation_regarding)
    chosen = next((r for r in offered if r is not None), None)
    if not decision.track or refused:
        assert decision.regarding is None and not decision.regarding_wins
    else:
        assert decision.regarding == chosen
        assert decision.regarding_wins is (chosen is not None and chosen == ctx.folder_regarding)
    if decision.track and refused and chosen is not None:
        assert f"could not be set regarding that {chosen[0]}" in decision.reason
