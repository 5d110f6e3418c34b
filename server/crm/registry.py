"""The record types: one description per table of what pages, the API, search, security and
resolution need to know (fields, labels, title, searchable and email fields).

Adding a field to a record's form and API means adding a :class:`Field` here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from server.crm.models import Account, Case, Contact, Lead, Opportunity, Queue


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "str"  # str text email phone url int decimal date bool choice ref
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    ref: str | None = None  # record type a "ref" field points to (its id)
    list: bool = False  # shown as a column in list pages


@dataclass(frozen=True)
class RecordType:
    name: str  # table name for privileges and URLs: account, contact, ...
    model: type
    label: str
    plural: str
    title_field: str
    fields: tuple[Field, ...]
    search_fields: tuple[str, ...]
    email_fields: tuple[str, ...] = ()
    number_field: str | None = None
    icon: str = "record"
    extra: dict = field(default_factory=dict)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


E = ("email1", "email2", "email3")


def _emails() -> tuple[Field, ...]:
    return (Field("email1", "Email", "email", max_length=320, list=True),
            Field("email2", "Email 2", "email", max_length=320),
            Field("email3", "Email 3", "email", max_length=320))


RECORD_TYPES: dict[str, RecordType] = {
    t.name: t for t in (
        RecordType(
            "account", Account, "Account", "Accounts", "name",
            (Field("name", "Account name", required=True, max_length=160, list=True),
             Field("account_number", "Account number", max_length=20),
             Field("phone", "Phone", "phone", max_length=50, list=True),
             *_emails(),
             Field("website", "Website", "url", max_length=200),
             Field("industry", "Industry", max_length=80),
             Field("city", "City", max_length=80, list=True),
             Field("country", "Country", max_length=80),
             Field("annual_revenue", "Annual revenue", "decimal"),
             Field("parent_account_id", "Parent account", "ref", ref="account"),
             Field("description", "Description", "text")),
            ("name", "account_number", "phone", *E), E, "account_number", "account"),
        RecordType(
            "contact", Contact, "Contact", "Contacts", "full_name",
            (Field("first_name", "First name", max_length=100),
             Field("last_name", "Last name", required=True, max_length=100),
             Field("job_title", "Job title", max_length=100, list=True),
             Field("parent_account_id", "Account", "ref", ref="account", list=True),
             *_emails(),
             Field("phone", "Business phone", "phone", max_length=50, list=True),
             Field("mobile_phone", "Mobile phone", "phone", max_length=50),
             Field("city", "City", max_length=80),
             Field("description", "Description", "text")),
            ("full_name", "phone", "mobile_phone", *E), E, None, "contact"),
        RecordType(
            "lead", Lead, "Lead", "Leads", "full_name",
            (Field("topic", "Topic", max_length=200, list=True),
             Field("first_name", "First name", max_length=100),
             Field("last_name", "Last name", required=True, max_length=100),
             Field("company_name", "Company", max_length=160, list=True),
             Field("job_title", "Job title", max_length=100),
             *_emails(),
             Field("phone", "Phone", "phone", max_length=50),
             Field("status", "Status", "choice",
                   choices=("new", "contacted", "qualified", "disqualified"), list=True),
             Field("source", "Source", "choice",
                   choices=("email", "web", "phone", "referral", "event", "other")),
             Field("description", "Description", "text")),
            ("full_name", "company_name", "topic", "phone", *E), E, None, "lead"),
        RecordType(
            "opportunity", Opportunity, "Opportunity", "Opportunities", "name",
            (Field("name", "Topic", required=True, max_length=200, list=True),
             Field("customer_account_id", "Account", "ref", ref="account", list=True),
             Field("customer_contact_id", "Contact", "ref", ref="contact"),
             Field("estimated_value", "Est. revenue", "decimal", list=True),
             Field("estimated_close_date", "Est. close date", "date", list=True),
             Field("stage", "Stage", "choice", choices=("qualify", "develop", "propose", "close")),
             Field("status", "Status", "choice", choices=("open", "won", "lost"), list=True),
             Field("probability", "Probability (%)", "int"),
             Field("description", "Description", "text")),
            ("name",), (), None, "opportunity"),
        RecordType(
            "case", Case, "Case", "Cases", "title",
            (Field("title", "Case title", required=True, max_length=200, list=True),
             Field("ticket_number", "Case number", max_length=20, list=True),
             Field("customer_account_id", "Account", "ref", ref="account", list=True),
             Field("customer_contact_id", "Contact", "ref", ref="contact"),
             Field("status", "Status", "choice",
                   choices=("in_progress", "on_hold", "waiting", "resolved", "canceled"), list=True),
             Field("priority", "Priority", "choice", choices=("high", "normal", "low"), list=True),
             Field("origin", "Origin", "choice", choices=("email", "phone", "web")),
             Field("description", "Description", "text")),
            ("title", "ticket_number"), (), "ticket_number", "case"),
        RecordType(
            "queue", Queue, "Queue", "Queues", "name",
            (Field("name", "Name", required=True, max_length=160, list=True),
             Field("email", "Email", "email", max_length=320, list=True),
             Field("accepting", "Accepts email from", "choice",
                   choices=("everyone", "known_senders", "nobody")),
             Field("description", "Description", "text")),
            ("name", "email"), ("email",), None, "queue"),
    )
}

MODEL_TYPES = {t.model: t for t in RECORD_TYPES.values()}


def record_type(name: str) -> RecordType:
    """The record type called ``name``; KeyError for an unknown one."""
    return RECORD_TYPES[name]


def type_of(record) -> RecordType:
    return MODEL_TYPES[type(record)]


# Values stored on a record but made from its fields: a person's full name from first and
# last name. Field security applies to such a value through its parts.
DERIVED = {"full_name": ("first_name", "last_name")}


def parts_of(rt: RecordType, name: str) -> tuple[str, ...]:
    """The fields the value of ``name`` is made of (itself for a plain field)."""
    parts = DERIVED.get(name)
    if parts and name not in rt.field_names and all(rt.field(n) for n in parts):
        return parts
    return (name,)
