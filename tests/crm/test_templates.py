"""Email templates: placeholders from the recipient, the regarding record and the sender,
only the fields the sender may read, unknown placeholders reported by name, anything beyond
placeholders and conditions refused, HTML in values escaped, and rendering never raising
(generated templates)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.crm.services import records
from server.crm.registry import RECORD_TYPES
from server.crm.services.email_templates import context
from server.crm.templates import EmailTemplate, Fields, render
from server.db import db
from server.security import authz
from server.security.models import SecuredField


@pytest.fixture
def world(app, make_user):
    boss = make_user("boss@contoso.test", roles=["System Administrator"], name="Ada Boss")
    sam = make_user("sam@contoso.test", roles=["Salesperson"], name="Sam Seller")
    p = authz.principal(sam)
    account = records.create(p, RECORD_TYPES["account"], {"name": "Fabrikam <b>Inc</b>"})
    db.session.flush()
    contact = records.create(p, RECORD_TYPES["contact"], {
        "first_name": "Ann", "last_name": "Customer", "email1": "ann@customer.example",
        "mobile_phone": "+1 555 0199", "parent_account_id": account.id})
    case = records.create(authz.principal(boss), RECORD_TYPES["case"],
                          {"title": "Printer on fire", "customer_account_id": account.id},
                          owner=sam)
    db.session.commit()
    return {"boss": boss, "sam": sam, "account": account, "contact": contact, "case": case}


def values_for(world, user="sam"):
    p = authz.principal(world[user])
    return context(p, recipient=("contact", world["contact"]), regarding=("case", world["case"]))


def template(subject="", body=""):
    return EmailTemplate(name="t", subject=subject, body_html=body)


def test_placeholders_from_recipient_regarding_and_sender(world):
    out = render(template(
        "Your case {{ regarding.case_number }}: {{ regarding.name }}",
        "<p>Dear {{ recipient.first_name }} of {{ recipient.account }},</p>"
        "<p>{% if recipient.mobile_phone %}We will call {{ recipient.mobile_phone }}."
        "{% else %}No phone.{% endif %}</p><p>{{ sender.name | upper }} "
        "({{ regarding.owner }})</p>"), values_for(world))
    assert out.problems == []
    case = world["case"]
    assert out.subject == f"Your case {case.ticket_number}: Printer on fire"
    assert "Dear Ann of Fabrikam &lt;b&gt;Inc&lt;/b&gt;," in out.html  # values are escaped
    assert "We will call +1 555 0199." in out.html
    assert "SAM SELLER (Sam Seller)" in out.html


def test_a_secured_field_is_unknown_to_whoever_may_not_read_it(world):
    db.session.add(SecuredField(table_name="contact", field="mobile_phone"))
    db.session.commit()
    tpl = template("Hi", "<p>{{ recipient.mobile_phone }}</p>")
    out = render(tpl, values_for(world))
    assert out.html == "" and out.problems == [
        "Body: Unknown placeholders (or fields you may not read): {{ recipient.mobile_phone }}."]
    assert render(tpl, values_for(world, "boss")).html == "<p>+1 555 0199</p>"


def test_unknown_placeholders_are_reported_even_in_branches_not_taken(world):
    out = render(template("{{ recipient.nickname }} {{ whoever }}",
                          "{% if false %}{{ regarding.secret_sauce }}{% endif %}"),
                 values_for(world))
    assert out.problems == [
        "Subject: Unknown placeholders (or fields you may not read): {{ recipient.nickname }}, "
        "{{ whoever }}.",
        "Body: Unknown placeholders (or fields you may not read): {{ regarding.secret_sauce }}."]


@pytest.mark.parametrize("source, words", [
    ("{{ recipient.__class__ }}", "Unknown placeholders"),
    ("{{ recipient.first_name.__class__.__mro__ }}", "Placeholders are written as"),
    ("{{ recipient.items() }}", "not call"),
    ("{% for x in recipient %}{{ x }}{% endfor %}", "not for"),
    ("{{ range(10) }}", "not call"),
    ("{% set x = 1 %}", "not assign"),
    ("{{ recipient.first_name | attr('upper') }}", "filter attr"),
    ("{% include 'base.html' %}", "not include"),
    ("{{ 9 ** 9 ** 9 }}", "not pow"),
    ("{{ recipient.first_name", "cannot be read"),
    ("{{ self }}", "Unknown placeholders"),
])
def test_a_template_cannot_reach_anything_beyond_its_values(world, source, words):
    out = render(template("x", source), values_for(world))
    assert out.html == ""
    assert any(words in p for p in out.problems), out.problems


def test_the_subject_is_one_line(world):
    out = render(template("{{ regarding.description }} done", ""),
                 {"regarding": Fields(description="a\r\nBcc: evil@example.com\n"),
                  "recipient": Fields(), "sender": Fields()})
    assert out.subject == "a Bcc: evil@example.com done"


SOURCES = st.lists(st.one_of(
    st.text(max_size=8), st.sampled_from([
        "{{", "}}", "{%", "%}", "{#", "#}", "if", "endif", "else", "for", "recipient",
        "recipient.first_name", ".", "|", "upper", "(", ")", "'", "\"", "==", "and", "not",
        "__class__", "[", "]", "0", " "])), max_size=20).map("".join)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(subject=SOURCES, body=SOURCES)
def test_rendering_never_raises(world, subject, body):
    out = render(template(subject, body), values_for(world))
    assert isinstance(out.subject, str) and isinstance(out.html, str)
    assert all(isinstance(p, str) and p for p in out.problems)
    assert "\n" not in out.subject and "\r" not in out.subject
