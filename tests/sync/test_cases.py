"""Email to case against real peers: a queue's mailbox on Dovecot (IMAP) sending through
aiosmtpd. A new sender's email opens a case with a new contact and an acknowledgement that
arrives with the case number; the reply (by thread or by the case number alone) updates the
same case; an auto-reply and a bounce open nothing and get nothing; a reply to a resolved
case reopens it or opens a follow-up, per the rule and its window; round-robin spreads ten
cases over a team; mail to the queue synced from a user's mailbox gets a queue item; every
case decision is in the decision row."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.crm.activities import Email
from server.crm.models import Case, Contact
from server.crm.queues import CaseAcknowledgement, CaseRule, QueueItem
from server.crm.services import records
from server.crm.templates import EmailTemplate
from server.db import db, utcnow
from server.security import authz
from server.sync.engine.outgoing import send_pending
from server.sync.engine.run import sync_mailbox
from tests.sync import world as w
from tests.sync.mailboxes import make_mailbox, make_profile


@pytest.fixture
def desk(app, make_user, dovecot, make_mail_user, smtp_server):
    """The Support queue (team Care: three agents) with its mailbox on Dovecot, and a rule
    that opens a case for anything written by a person."""
    from types import SimpleNamespace
    queue, team = w.support_queue(make_user)
    more = [make_user(f"agent{n}@org.example", name=f"Agent {n}",
                      roles=["Customer Service Representative"]) for n in (2, 3)]
    team.members.extend(more)
    db.session.commit()
    box_user = make_mail_user("support")
    profile = make_profile(dovecot=dovecot, smtp=smtp_server)
    box = make_mailbox(profile, queue=queue, username=box_user.username,
                       password=box_user.password, tracking_option="all", enabled=True)
    rule = CaseRule(queue_id=queue.id, position=1, name="Written by a person",
                    conditions=[{"kind": "not_automatic"}], create_contact=True,
                    acknowledge=True, routing="round_robin", route_team_id=team.id,
                    on_resolved="reopen", resolved_window_days=7)
    db.session.add(rule)
    db.session.commit()
    return SimpleNamespace(queue=queue, team=team, box=box, rule=rule, smtp=smtp_server,
                           store=w.ImapStore(dovecot, box_user))


def deliver(desk, **fields) -> None:
    desk.store.deliver(w.raw(to="support@org.example", **fields))


def sync(desk):
    result = sync_mailbox(desk.box.id)
    assert result.status == "success", result.reason
    db.session.expire_all()
    return result


def cases() -> list[Case]:
    return list(db.session.scalars(select(Case).order_by(Case.id)))


@pytest.mark.both_databases
def test_new_sender_opens_a_case_with_a_contact_and_gets_the_number(desk):
    deliver(desk, sender="Dana Newcomer <dana@newco.example>", subject="Printer on fire",
            mid="fire1@newco.example")
    sync(desk)
    [case] = cases()
    contact = db.session.scalar(select(Contact).where(Contact.email1 == "dana@newco.example"))
    assert contact.full_name == "Dana Newcomer"
    assert case.title == "Printer on fire" and case.origin == "email"
    assert case.customer_contact_id == contact.id and case.status == "in_progress"
    assert case.owner_user.email in {m.email for m in desk.team.members}
    [mail] = w.tracked("fire1@newco.example")
    assert mail.regarding_ref == ("case", case.id)
    row = w.decision(desk.box, "fire1@newco.example")
    assert f"Case {case.ticket_number} was opened with a new contact" in row.reason
    assert {"rule": "case:Written by a person:not_automatic", "matched": True} in row.rule_hits
    assert send_pending(desk.box.id).sent == 1
    [ack] = desk.smtp.wait_for(1)
    assert ack.rcpt_tos == ("dana@newco.example",)
    assert case.ticket_number in ack.message["Subject"]
    assert ack.message["In-Reply-To"] == "<fire1@newco.example>"
    assert ack.message["References"] == "<fire1@newco.example>"
    assert ack.message["Auto-Submitted"] == "auto-replied"  # RFC 3834
    assert ack.message["X-Auto-Response-Suppress"] == "All"
    assert case.ticket_number in ack.message.get_body(("plain",)).get_content()


def test_our_own_acknowledgement_coming_back_opens_nothing_and_gets_nothing(desk):
    desk.rule.conditions = []  # a rule that takes anything, automatic mail too
    db.session.commit()
    deliver(desk, sender="dana@newco.example", subject="Printer", mid="p1@newco.example")
    sync(desk)
    assert send_pending(desk.box.id).sent == 1
    ack = desk.smtp.wait_for(1)[0].message
    # The very message, and a copy a customer's server sent back with an id of its own.
    desk.store.deliver(ack.as_bytes())
    again = ack.as_bytes().replace(ack["Message-ID"].encode(), b"<bounced@newco.example>")
    desk.store.deliver(again)
    # And one whose automatic markers a server on the way took off.
    del ack["Auto-Submitted"], ack["X-Auto-Response-Suppress"]
    stripped = ack.as_bytes().replace(ack["Message-ID"].encode(), b"<stripped@newco.example>")
    desk.store.deliver(stripped)
    sync(desk)
    assert len(cases()) == 1
    assert send_pending(desk.box.id).sent == 0
    assert "sent automatically (Auto-Submitted: auto-replied)" in \
        w.decision(desk.box, "bounced@newco.example").reason
    # Without the markers it is still the queue's own (outgoing) mail: tracked with the
    # conversation, never through the case rules.
    stripped_row = w.decision(desk.box, "stripped@newco.example")
    assert stripped_row.tracked and "opened" not in stripped_row.reason
    assert not any(h["rule"].startswith("case:") for h in stripped_row.rule_hits)


def test_the_reply_updates_the_same_case_by_thread_and_by_case_number(desk):
    deliver(desk, sender="dana@newco.example", subject="Printer on fire", mid="fire1@newco.example")
    sync(desk)
    send_pending(desk.box.id)
    ack_id = desk.smtp.wait_for(1)[0].message["Message-ID"]
    deliver(desk, sender="dana@newco.example", subject="RE: Printer on fire",
            mid="fire2@newco.example", In_Reply_To=ack_id)
    [case] = cases()
    deliver(desk, sender="dana@newco.example", subject=f"Still burning {case.ticket_number}",
            mid="fire3@newco.example")
    sync(desk)
    assert len(cases()) == 1
    for mid in ("fire2@newco.example", "fire3@newco.example"):
        assert w.tracked(mid)[0].regarding_ref == ("case", case.id)
    assert "found by the conversation" in w.decision(desk.box, "fire2@newco.example").reason
    assert "the case number in the subject" in w.decision(desk.box, "fire3@newco.example").reason
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 1
    # Replies get no acknowledgement.
    assert send_pending(desk.box.id).sent == 0


def test_auto_reply_and_bounce_open_nothing_and_get_nothing(desk):
    deliver(desk, sender="dana@newco.example", subject="Automatic reply: hello",
            mid="ooo@newco.example", extra=[("Auto-Submitted", "auto-replied")])
    bounce = (b"From: MAILER-DAEMON@mx.newco.example\r\nTo: support@org.example\r\n"
              b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.newco.example>\r\n"
              b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
              b" boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--B\r\n"
              b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
              b"Final-Recipient: rfc822; x@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n--B--\r\n")
    desk.store.deliver(bounce)
    sync(desk)
    assert cases() == [] and db.session.scalar(select(func.count()).select_from(Contact)) == 0
    assert send_pending(desk.box.id).sent == 0 and desk.smtp.messages == []
    assert "automatic" in w.decision(desk.box, "ooo@newco.example").reason
    assert "delivery report" in w.decision(desk.box, "b1@mx.newco.example").reason


def test_a_sender_with_no_conditions_to_meet_still_is_never_acknowledged_twice_a_day(desk):
    desk.rule.conditions, desk.rule.ack_per_sender_per_day = [], 1
    db.session.commit()
    deliver(desk, sender="dana@newco.example", subject="One", mid="one@newco.example")
    deliver(desk, sender="dana@newco.example", subject="Two", mid="two@newco.example")
    sync(desk)
    assert len(cases()) == 2
    assert send_pending(desk.box.id).sent == 1
    assert "got 1 acknowledgement(s) in the last 24 hours" in \
        w.decision(desk.box, "two@newco.example").reason
    assert db.session.scalar(select(func.count()).select_from(CaseAcknowledgement)) == 1


def _resolve(case, days_ago: int) -> None:
    owner = case.owner_user
    records.update(authz.principal(owner), case, {"status": "resolved"})
    case.resolved_on = utcnow() - timedelta(days=days_ago)
    db.session.commit()


def _reply_after_resolution(desk, days_ago: int) -> None:
    """Dana's request opens a case, resolved ``days_ago``; then her reply comes."""
    deliver(desk, sender="dana@newco.example", subject="Printer", mid="p1@newco.example")
    sync(desk)
    _resolve(cases()[0], days_ago=days_ago)
    deliver(desk, sender="dana@newco.example", subject="RE: Printer", mid="p2@newco.example",
            In_Reply_To="<p1@newco.example>")
    sync(desk)


def test_reply_to_a_resolved_case_reopens_it_within_the_window(desk):
    _reply_after_resolution(desk, days_ago=2)
    [case] = cases()
    assert case.status == "in_progress" and case.resolved_on is None
    assert "so the case is reopened" in w.decision(desk.box, "p2@newco.example").reason


@pytest.mark.both_databases
def test_reply_after_the_window_or_by_the_rule_opens_a_linked_case(desk):
    _reply_after_resolution(desk, days_ago=30)
    first, second = cases()
    assert first.status == "resolved" and second.parent_case_id == first.id
    assert second.customer_contact_id == first.customer_contact_id
    assert w.tracked("p2@newco.example")[0].regarding_ref == ("case", second.id)
    desk.rule.on_resolved = "new_case"
    db.session.commit()
    _resolve(second, days_ago=0)
    deliver(desk, sender="dana@newco.example", subject="RE: Printer", mid="p3@newco.example",
            In_Reply_To="<p2@newco.example>")
    sync(desk)
    assert cases()[-1].parent_case_id == second.id
    assert "opens a new case for replies to resolved cases" in \
        w.decision(desk.box, "p3@newco.example").reason


@pytest.mark.both_databases  # the rule's turn is taken under a row lock there
def test_round_robin_spreads_ten_cases_over_the_team(desk):
    desk.rule.acknowledge = False
    db.session.commit()
    for n in range(10):
        deliver(desk, sender=f"c{n}@customers.example", subject=f"Issue {n}",
                mid=f"issue{n}@customers.example")
    sync(desk)
    owners = Counter(c.owner_user_id for c in cases())
    assert sum(owners.values()) == 10
    assert set(owners) == {m.id for m in desk.team.members}
    assert sorted(owners.values()) == [3, 3, 4]


def test_least_busy_member_and_a_fixed_user(desk, make_user):
    desk.rule.acknowledge, desk.rule.routing = False, "least_busy"
    db.session.commit()
    busy = sorted(desk.team.members, key=lambda m: m.id)
    for member in busy[:2]:
        w.record(member, "case", title="Old work")
    db.session.commit()
    deliver(desk, sender="x@customers.example", subject="Help", mid="help@customers.example")
    sync(desk)
    assert cases()[-1].owner_user_id == busy[2].id
    assert "the least busy of team Care (0 open cases)" in \
        w.decision(desk.box, "help@customers.example").reason


def test_first_matching_rule_wins_and_the_template_is_used(desk):
    template = EmailTemplate(name="Ack", subject="We got it: {{ regarding.title }}",
                             body_html="<p>Dear {{ recipient.first_name }}, case "
                                       "{{ regarding.case_number }} is open.</p>")
    db.session.add(template)
    vip = CaseRule(queue_id=desk.queue.id, position=0, name="VIP", priority="high",
                   conditions=[{"kind": "sender_domain", "value": "vip.example"},
                               {"kind": "subject_contains", "value": "urgent"}],
                   acknowledge=True, ack_template_id=template.id, routing="user",
                   route_user_id=desk.team.members[0].id)
    db.session.add(vip)
    db.session.commit()
    deliver(desk, sender="Vera Vip <vera@vip.example>", subject="URGENT outage",
            mid="u1@vip.example")
    deliver(desk, sender="vera@vip.example", subject="A question", mid="u2@vip.example")
    sync(desk)
    first, second = cases()
    assert first.priority == "high" and first.owner_user_id == desk.team.members[0].id
    assert second.priority == "normal"
    hits = w.decision(desk.box, "u2@vip.example").rule_hits
    assert {"rule": "case:VIP:subject_contains", "matched": False} in hits
    assert {"rule": "case:Written by a person", "matched": True} in hits
    send_pending(desk.box.id)
    subjects = [str(m.message["Subject"]) for m in desk.smtp.wait_for(2)]
    assert any(s.startswith(f"[{first.ticket_number}] We got it: URGENT outage") for s in subjects)
    assert any(s.startswith(f"[{second.ticket_number}] Re: A question") for s in subjects)
    assert "Dear Vera, case " + first.ticket_number in \
        next(m.message for m in desk.smtp.messages if "URGENT" in m.message["Subject"]) \
        .get_body(("html",)).get_content()


def test_mail_to_the_queue_from_a_users_mailbox_gets_a_queue_item(app, make_user, tmp_path):
    queue, _ = w.support_queue(make_user)
    bob = make_user("bob@org.example", name="Bob Seller")
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.mailbox(bob, prof=w.profile("maildir", maildir_root=str(store.store)),
                    tracking_option="all")
    db.session.commit()
    store.deliver(w.raw(to="support@org.example, bob@org.example", mid="cc1@x.example"))
    store.deliver(w.raw(to="bob@org.example", mid="plain@x.example"))
    assert sync_mailbox(box.id).tracked == 2
    items = db.session.scalars(select(QueueItem)).all()
    assert [(i.queue_id, i.activity_id) for i in items] == \
        [(queue.id, w.tracked("cc1@x.example")[0].id)]


@pytest.mark.both_databases
def test_a_queue_takes_items_from_everyone_known_senders_or_nobody(app, make_user, tmp_path):
    queue, _ = w.support_queue(make_user)
    bob = make_user("bob@org.example", name="Bob Seller")
    w.record(bob, "contact", last_name="Known", email1="known@customer.example")
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.mailbox(bob, prof=w.profile("maildir", maildir_root=str(store.store)),
                    tracking_option="all")
    db.session.commit()

    def items_for(accepting: str) -> set[int]:
        queue.accepting = accepting
        db.session.commit()
        for sender in ("known@customer.example", "stranger@else.example"):
            store.deliver(w.raw(sender=sender, to="support@org.example, bob@org.example",
                                mid=f"{accepting}-{sender}"))
        assert sync_mailbox(box.id).tracked == 2
        return {w.tracked(f"{accepting}-{s}")[0].id for s in ("known@customer.example",
                                                             "stranger@else.example")} & \
            {i.activity_id for i in db.session.scalars(select(QueueItem))}

    everyone = items_for("everyone")
    assert len(everyone) == 2
    known = items_for("known_senders")
    assert known == {w.tracked("known_senders-known@customer.example")[0].id}
    assert items_for("nobody") == set()


def test_the_queue_accepting_switch_is_checked_on_the_record(app, make_user):
    from server.errors import Invalid
    queue, _ = w.support_queue(make_user)
    admin = make_user("admin@org.example", roles=["System Administrator"])
    with pytest.raises(Invalid):
        records.update(authz.principal(admin), queue, {"accepting": "friends"})
    records.update(authz.principal(admin), queue, {"accepting": "known_senders"})
    assert queue.accepting == "known_senders"


def test_rules_on_the_body_and_attachments_see_the_whole_of_mail_read_headers_first(
        desk, monkeypatch):
    """The queue's mailbox with the default tracking option reads its Inbox headers first;
    the replies it tracks are read whole before the case rules run, so a body-contains and
    a has-attachments rule see what a header section does not hold."""
    from tests.sync.test_headers_first import Reads
    desk.rule.acknowledge = True
    db.session.add_all([
        CaseRule(queue_id=desk.queue.id, position=-2, name="Files", priority="low",
                 conditions=[{"kind": "has_attachments"}]),
        CaseRule(queue_id=desk.queue.id, position=-1, name="Refund", priority="high",
                 conditions=[{"kind": "body_contains", "value": "refund"}])])
    db.session.commit()
    deliver(desk, sender="dana@newco.example", subject="Printer", mid="p1@newco.example")
    sync(desk)
    send_pending(desk.box.id)
    ack_id = desk.smtp.wait_for(1)[0].message["Message-ID"]
    desk.box.tracking_option = "crm_responses"  # the default: headers first from now on
    db.session.commit()
    with_file = (f"From: dana@newco.example\r\nTo: support@org.example\r\nSubject: RE: "
                 f"Printer\r\nMessage-ID: <r1@newco.example>\r\nIn-Reply-To: {ack_id}\r\n"
                 "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
                 "--B\r\nContent-Type: text/plain\r\n\r\nThe log.\r\n--B\r\n"
                 "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=log.txt"
                 "\r\n\r\nerror 42\r\n--B--\r\n").encode()
    replies = {desk.store.deliver(with_file), desk.store.deliver(w.raw(
        sender="dana@newco.example", to="support@org.example", subject="RE: Printer",
        mid="r2@newco.example", In_Reply_To=ack_id, body="I would like a refund.\r\n"))}
    stranger = desk.store.deliver(w.raw(sender="stranger@else.example", to="support@org.example",
                                        subject="Hi", mid="s1@else.example", body="A refund!\r\n"))
    reads = Reads(monkeypatch)
    sync(desk)
    assert replies | {stranger} <= reads.read_as_headers and reads.read_whole == replies
    [case] = cases()
    files = w.decision(desk.box, "r1@newco.example")
    assert {"rule": "case:Files:has_attachments", "matched": True} in files.rule_hits
    assert 'Case rule "Files" applies' in files.reason
    refund = w.decision(desk.box, "r2@newco.example")
    assert {"rule": "case:Files:has_attachments", "matched": False} in refund.rule_hits
    assert {"rule": "case:Refund:body_contains", "matched": True} in refund.rule_hits
    for mid in ("r1@newco.example", "r2@newco.example"):
        assert w.tracked(mid)[0].regarding_ref == ("case", case.id)
    assert not w.decision(desk.box, "s1@else.example").tracked


@pytest.mark.both_databases
def test_a_refused_email_in_a_wave_leaves_the_others_case_work_done(desk, make_user, make_unit):
    """The wave's case work is written together; one email refused (its subject names a case
    of another business unit, which the queue's agents may not read) is redone alone with
    its reason, and the other emails of the wave still open their cases, once."""
    far = make_user("far@org.example", unit=make_unit("Far East"),
                    roles=["Customer Service Representative"])
    hidden = w.record(far, "case", title="Not ours")
    db.session.commit()
    deliver(desk, sender="dana@newco.example", subject="Printer", mid="ok1@newco.example")
    deliver(desk, sender="eve@newco.example", subject=f"About {hidden.ticket_number}",
            mid="no1@newco.example")
    deliver(desk, sender="dana@newco.example", subject="Scanner too", mid="ok2@newco.example")
    sync(desk)
    opened = [c for c in cases() if c.id != hidden.id]
    assert sorted(c.title for c in opened) == ["Printer", "Scanner too"]
    refused = w.decision(desk.box, "no1@newco.example")
    assert refused.tracked and "But it could not be done" in refused.reason
    assert w.tracked("no1@newco.example")[0].regarding_ref != ("case", hidden.id)
    assert db.session.scalar(select(func.count()).select_from(Contact).where(
        Contact.email1 == "dana@newco.example")) == 1  # one contact for both of her emails
    assert db.session.scalar(select(func.count()).select_from(CaseAcknowledgement)) == 2
    assert sorted(c.owner_user_id for c in opened) == sorted(
        m.id for m in sorted(desk.team.members, key=lambda m: m.id)[:2])  # turns taken once


def test_case_numbers_in_subjects_are_found():
    from server.sync.mail.case_rules import case_numbers
    assert case_numbers("RE: [CAS-01234-1A2B3C] help cas-01234-1a2b3c") == ["CAS-01234-1A2B3C"]
    assert case_numbers("CAS-1-2 no") == []


def test_business_hours_are_read_and_checked():
    from datetime import datetime, timezone
    from server.sync.mail.case_rules import BusinessHours
    hours = BusinessHours.parse("mon-fri 09:00-17:00 Europe/Berlin")
    assert hours.contains(datetime(2024, 3, 5, 9, 0, tzinfo=timezone.utc))  # 10:00 Berlin, Tue
    assert not hours.contains(datetime(2024, 3, 9, 10, 0, tzinfo=timezone.utc))  # Saturday
    assert not hours.contains(datetime(2024, 3, 5, 16, 30, tzinfo=timezone.utc))  # 17:30
    for bad in ("weekdays", "mon-fri 25:00-26:00 UTC", "mon-fri 09:00-17:00 Mars/Olympus"):
        with pytest.raises(ValueError):
            BusinessHours.parse(bad)


def test_a_key_accounts_people_and_attachments_get_their_own_rules(desk, make_user):
    agent = make_user("sales@org.example")  # a Salesperson keeps the accounts
    account = w.record(agent, "account", name="Fabrikam")
    w.record(agent, "contact", first_name="Fay", last_name="Bright", email1="fay@fabrikam.example",
             parent_account_id=account.id)
    db.session.add_all([
        CaseRule(queue_id=desk.queue.id, position=-2, name="Key account", priority="high",
                 conditions=[{"kind": "sender_account", "value": str(account.id)}]),
        CaseRule(queue_id=desk.queue.id, position=-1, name="Files", priority="low",
                 conditions=[{"kind": "has_attachments"}, {"kind": "sender_unknown"}])])
    desk.rule.acknowledge = False
    db.session.commit()
    deliver(desk, sender="fay@fabrikam.example", subject="Help", mid="k1@fabrikam.example")
    with_file = (b"From: x@files.example\r\nTo: support@org.example\r\nSubject: Logs\r\n"
                 b"Message-ID: <f1@files.example>\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
                 b"Content-Type: text/plain\r\n\r\nAttached.\r\n--B\r\nContent-Type: text/plain\r\n"
                 b"Content-Disposition: attachment; filename=log.txt\r\n\r\nerror 42\r\n--B--\r\n")
    desk.store.deliver(with_file)
    sync(desk)
    by_title = {c.title: c for c in cases()}
    assert by_title["Help"].priority == "high" and by_title["Help"].customer_contact_id
    assert by_title["Logs"].priority == "low"
    assert 'Case rule "Key account" applies (the sender belongs to account' in \
        w.decision(desk.box, "k1@fabrikam.example").reason
