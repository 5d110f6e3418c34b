"""The record types: one description per table of what pages, the API, search, security and
resolution need to know (fields, labels, title, searchable and email fields).

Adding a field to a record's form and API means adding a :class:`Field` here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from server.crm.models import Account, Case, Contact, Lead, Opportunity, Queue
from server.i18n import N_


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

    @property
    def noun(self) -> str:
        """The type's name inside a sentence ("this account"), marked for the catalogs: a
        language translates it as it reads there rather than as a lowercased label."""
        return NOUNS[self.name][0]

    @property
    def nouns(self) -> str:
        """The plural inside a sentence ("no accounts yet")."""
        return NOUNS[self.name][1]


# Each type's name as it reads inside a sentence (singular, plural).
NOUNS = {"account": (N_("account"), N_("accounts")), "contact": (N_("contact"), N_("contacts")),
         "lead": (N_("lead"), N_("leads")),
         "opportunity": (N_("opportunity"), N_("opportunities")),
         "case": (N_("case"), N_("cases")), "queue": (N_("queue"), N_("queues")),
         "activity": (N_("activity"), N_("activities"))}  # (privileges' table of every kind)

# What a choice field's stored value reads as on pages (the value stays the API's key).
CHOICE_LABELS = {
    "new": N_("New"), "contacted": N_("Contacted"), "qualified": N_("Qualified"),
    "disqualified": N_("Disqualified"), "email": N_("Email"), "web": N_("Web"),
    "phone": N_("Phone"), "referral": N_("Referral"), "event": N_("Event"),
    "other": N_("Other"), "qualify": N_("Qualify"), "develop": N_("Develop"),
    "propose": N_("Propose"), "close": N_("Close"), "open": N_("Open"), "won": N_("Won"),
    "lost": N_("Lost"), "in_progress": N_("In progress"), "on_hold": N_("On hold"),
    "waiting": N_("Waiting"), "resolved": N_("Resolved"), "canceled": N_("Canceled"),
    "high": N_("High"), "normal": N_("Normal"), "low": N_("Low"),
    "everyone": N_("Everyone"), "known_senders": N_("Known senders"), "nobody": N_("Nobody"),
    "completed": N_("Completed"), "incoming": N_("Incoming"), "outgoing": N_("Outgoing"),
    # Rights a record is shared with (``records.SHARE_RIGHTS``).
    "read": N_("Read"), "write": N_("Write"), "append": N_("Append"),
    "append_to": N_("Append to"), "delete": N_("Delete"), "assign": N_("Assign"),
    "share": N_("Share"),
    # Where a queue's case rule sends a case (``queues.ROUTINGS``).
    "queue": N_("Leave in the queue"), "user": N_("Assign to a user"),
    "round_robin": N_("Round robin"), "least_busy": N_("Least busy"),
    # An attendee's response to a meeting (``items.calendar.RESPONSES``).
    "needs-action": N_("No response yet"), "accepted": N_("Accepted"),
    "declined": N_("Declined"), "tentative": N_("Tentative"), "delegated": N_("Delegated"),
    # A privilege (``security.privileges.PRIVILEGES``; the others are the share rights above).
    "create": N_("Create"),
}
# What an email's sending state (``Email.status``) reads as: its page, the timeline, the
# live state and the sentences that name it.
EMAIL_STATUS_LABELS = {"draft": N_("Draft"), "pending_send": N_("Waiting to be sent"),
                       "sending": N_("Sending"), "sent": N_("Sent"), "failed": N_("Not sent"),
                       "received": N_("Received"), "canceled": N_("Canceled")}


def choice_label(value: str | None, labels: dict[str, str] = CHOICE_LABELS) -> str:
    """A stored choice value's label (``in_progress``: ``In progress``), marked for the
    catalogs, so it reads in the reader's language where it is shown, a sentence's value
    too; a value without a label reads as it is stored, made readable."""
    label = labels.get(value or "")
    return label if label else (value or "").replace("_", " ").capitalize()


E = ("email1", "email2", "email3")


def _emails() -> tuple[Field, ...]:
    return (Field("email1", N_("Email"), "email", max_length=320, list=True),
            Field("email2", N_("Email 2"), "email", max_length=320),
            Field("email3", N_("Email 3"), "email", max_length=320))


RECORD_TYPES: dict[str, RecordType] = {
    t.name: t for t in (
        RecordType(
            "account", Account, N_("Account"), N_("Accounts"), "name",
            (Field("name", N_("Account name"), required=True, max_length=160, list=True),
             Field("account_number", N_("Account number"), max_length=20),
             Field("phone", N_("Phone"), "phone", max_length=50, list=True),
             *_emails(),
             Field("website", N_("Website"), "url", max_length=200),
             Field("industry", N_("Industry"), max_length=80),
             Field("city", N_("City"), max_length=80, list=True),
             Field("country", N_("Country"), max_length=80),
             Field("annual_revenue", N_("Annual revenue"), "decimal"),
             Field("parent_account_id", N_("Parent account"), "ref", ref="account"),
             Field("description", N_("Description"), "text")),
            ("name", "account_number", "phone", *E), E, "account_number", "account"),
        RecordType(
            "contact", Contact, N_("Contact"), N_("Contacts"), "full_name",
            (Field("first_name", N_("First name"), max_length=100),
             Field("last_name", N_("Last name"), required=True, max_length=100),
             Field("job_title", N_("Job title"), max_length=100, list=True),
             Field("parent_account_id", N_("Account"), "ref", ref="account", list=True),
             *_emails(),
             Field("phone", N_("Business phone"), "phone", max_length=50, list=True),
             Field("mobile_phone", N_("Mobile phone"), "phone", max_length=50),
             Field("city", N_("City"), max_length=80),
             Field("description", N_("Description"), "text")),
            ("full_name", "phone", "mobile_phone", *E), E, None, "contact"),
        RecordType(
            "lead", Lead, N_("Lead"), N_("Leads"), "full_name",
            (Field("topic", N_("Topic"), max_length=200, list=True),
             Field("first_name", N_("First name"), max_length=100),
             Field("last_name", N_("Last name"), required=True, max_length=100),
             Field("company_name", N_("Company"), max_length=160, list=True),
             Field("job_title", N_("Job title"), max_length=100),
             *_emails(),
             Field("phone", N_("Phone"), "phone", max_length=50),
             Field("status", N_("Status"), "choice",
                   choices=("new", "contacted", "qualified", "disqualified"), list=True),
             Field("source", N_("Source"), "choice",
                   choices=("email", "web", "phone", "referral", "event", "other")),
             Field("description", N_("Description"), "text")),
            ("full_name", "company_name", "topic", "phone", *E), E, None, "lead"),
        RecordType(
            "opportunity", Opportunity, N_("Opportunity"), N_("Opportunities"), "name",
            (Field("name", N_("Topic"), required=True, max_length=200, list=True),
             Field("customer_account_id", N_("Account"), "ref", ref="account", list=True),
             Field("customer_contact_id", N_("Contact"), "ref", ref="contact"),
             Field("estimated_value", N_("Est. revenue"), "decimal", list=True),
             Field("estimated_close_date", N_("Est. close date"), "date", list=True),
             Field("stage", N_("Stage"), "choice", choices=("qualify", "develop", "propose", "close")),
             Field("status", N_("Status"), "choice", choices=("open", "won", "lost"), list=True),
             Field("probability", N_("Probability (%)"), "int"),
             Field("description", N_("Description"), "text")),
            ("name",), (), None, "opportunity"),
        RecordType(
            "case", Case, N_("Case"), N_("Cases"), "title",
            (Field("title", N_("Case title"), required=True, max_length=200, list=True),
             Field("ticket_number", N_("Case number"), max_length=20, list=True),
             Field("customer_account_id", N_("Account"), "ref", ref="account", list=True),
             Field("customer_contact_id", N_("Contact"), "ref", ref="contact"),
             Field("status", N_("Status"), "choice",
                   choices=("in_progress", "on_hold", "waiting", "resolved", "canceled"), list=True),
             Field("priority", N_("Priority"), "choice", choices=("high", "normal", "low"), list=True),
             Field("origin", N_("Origin"), "choice", choices=("email", "phone", "web")),
             Field("description", N_("Description"), "text")),
            ("title", "ticket_number"), (), "ticket_number", "case"),
        RecordType(
            "queue", Queue, N_("Queue"), N_("Queues"), "name",
            (Field("name", N_("Name"), required=True, max_length=160, list=True),
             Field("email", N_("Email"), "email", max_length=320, list=True),
             Field("accepting", N_("Accepts email from"), "choice",
                   choices=("everyone", "known_senders", "nobody")),
             Field("description", N_("Description"), "text")),
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
