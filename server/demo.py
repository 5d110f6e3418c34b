"""The demo organization, Contoso Ltd: business units, a user in each built-in role, teams,
accounts, contacts, leads, opportunities, cases, a support queue and a few hundred activities
(threaded emails, meetings, tasks, phone calls) over the last 90 days.

``flask --app server seed-demo`` calls :func:`seed`. The data is deterministic (one seeded
random generator; dates are fixed offsets from the start of today, so the demo always looks
recent) and seeding is idempotent: a second run finds the demo and does nothing. Records are
owned the way a real sales and service organization would own them, so each demo user sees
the subset their role gives them. Every address is in a reserved ``.example`` domain.
"""
from __future__ import annotations

import base64
import hashlib
import html
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from server.crm.activities import (ActivityParty, Appointment, Email, PhoneCall, Task)
from server.crm.models import Account, Case, Contact, Lead, Opportunity, Organization, Queue
from server.db import db, utcnow
from server.demo_data import (ACCOUNT_OWNERS, ACCOUNTS, CASE_TITLES, FIRST_NAMES, JOB_TITLES,
                              LAST_NAMES, LEAD_COMPANIES, LOCATIONS, MEETING_SUBJECTS, PRODUCTS,
                              TASK_SUBJECTS)
from server.security.bootstrap import create_user, ensure_organization
from server.security.models import BusinessUnit, RecordShare, Team, User
from server.sync.demo import seed_demo_mailbox

ORG_NAME = "Contoso Ltd"
DOMAIN = "contoso.example"

# (email, password, role): printed by scripts/start.sh, used by the tests.
DEMO_SIGNINS: list[tuple[str, str, str]] = [
    ("admin@contoso.example", "Admin-Demo-2025", "System Administrator"),
    ("mia.manager@contoso.example", "Manager-Demo-2025", "Sales Manager"),
    ("sam.sales@contoso.example", "Sales-East-2025", "Salesperson"),
    ("sara.sales@contoso.example", "Sales-West-2025", "Salesperson"),
    ("chris.service@contoso.example", "Service-Demo-2025", "Customer Service Representative"),
]
# email -> (full name, job title, business unit, manager's email)
_USERS = {
    "admin@contoso.example": ("Alex Morgan", "IT Administrator", ORG_NAME, None),
    "mia.manager@contoso.example": ("Mia Hoffmann", "Sales Manager", "Sales", None),
    "sam.sales@contoso.example": ("Sam Patel", "Account Executive", "Sales East",
                                  "mia.manager@contoso.example"),
    "sara.sales@contoso.example": ("Sara Lindqvist", "Account Executive", "Sales West",
                                   "mia.manager@contoso.example"),
    "chris.service@contoso.example": ("Chris Okafor", "Support Engineer", "Service", None),
}
# unit -> parent unit (None: the root, which is renamed to the organization's name)
UNITS = {"Sales": ORG_NAME, "Sales East": "Sales", "Sales West": "Sales", "Service": ORG_NAME}

COUNTS = {"account": 50, "contact": 200, "lead": 30, "opportunity": 40, "case": 30, "queue": 1}
CONTOSO_DEAL = "Contoso deal"


def _key(email: str) -> str:
    """The short name the builder knows a demo user by: ``sam.sales@...`` -> ``sam``."""
    return email.split("@")[0].split(".")[0]


@dataclass
class _Thread:
    """What one email thread is about and who is in it."""
    subject: str
    regarding: tuple[str, object]
    user: User
    people: list  # contacts or a lead, the first one writes or is written to
    queue: Queue | None = None
    lines: list[str] = field(default_factory=list)  # what each message says, in order
    inbound_first: bool = False  # the customer writes first (else the CRM user does)


class _Builder:
    """Builds the demo in a fixed order with one random generator, so it is repeatable."""

    def __init__(self, org: Organization):
        self.org = org
        self.rnd = random.Random(42)
        # Start of today (UTC): every date is a fixed offset from it.
        self.now = utcnow()
        self.anchor = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.units: dict[str, BusinessUnit] = {}
        self.users: dict[str, User] = {}
        self.accounts: list[Account] = []
        self.contacts: list[Contact] = []
        self.contacts_of: dict[int, list[Contact]] = {}
        self.leads: list[Lead] = []
        self.opportunities: list[Opportunity] = []
        self.cases: list[Case] = []
        self.token_number = 1000
        self.activities = 0

    # -- time ---------------------------------------------------------------------------

    def days_ago(self, days: float, hour: int | None = None) -> datetime:
        """A working-hours moment ``days`` before today (negative: in the future)."""
        hour = hour if hour is not None else self.rnd.randint(8, 17)
        return self.anchor - timedelta(days=int(days)) + timedelta(
            hours=hour, minutes=self.rnd.choice((0, 5, 10, 15, 20, 30, 40, 45, 50)))

    def _stamp(self, record, when: datetime, user: User | None) -> None:
        record.created_on = record.modified_on = when
        record.created_by_id = record.modified_by_id = user.id if user else None

    # -- organization, units, users, teams -------------------------------------------------

    def organization(self) -> None:
        from server.security.bootstrap import root_unit
        root = root_unit()
        if root.name != ORG_NAME and db.session.scalar(
                select(BusinessUnit.id).where(BusinessUnit.name == ORG_NAME)) is None:
            root.name = ORG_NAME
        self.org.name = ORG_NAME
        self.units[ORG_NAME] = root
        for name, parent in UNITS.items():
            unit = db.session.scalar(select(BusinessUnit).where(BusinessUnit.name == name))
            if unit is None:
                unit = BusinessUnit(name=name, parent_id=self.units[parent].id)
                db.session.add(unit)
                db.session.flush()
            self.units[name] = unit
        for email, password, role in DEMO_SIGNINS:
            name, title, unit, manager = _USERS[email]
            user = create_user(email, name, password=password, unit=self.units[unit],
                               roles=[role], job_title=title,
                               phone=f"+1 555 0100 {len(self.users) + 10}")
            if manager:
                user.manager_id = self.users[_key(manager)].id
            self.users[_key(email)] = user
        u = self.users
        self.key_accounts = Team(name="Key Accounts", business_unit_id=self.units["Sales East"].id,
                                 description="Strategic accounts the East team and the sales "
                                             "manager work together.",
                                 members=[u["mia"], u["sam"]])
        self.care = Team(name="Customer Care", business_unit_id=self.units["Service"].id,
                         description="Customer service: case customers are shared with it.",
                         members=[u["chris"]])
        db.session.add_all([self.key_accounts, self.care])
        db.session.flush()

    def _owner(self, key: str):
        return self.key_accounts if key == "team" else self.users[key]

    def _own(self, record, owner) -> None:
        if isinstance(owner, Team):
            record.owner_user_id, record.owner_team_id = None, owner.id
        else:
            record.owner_user_id, record.owner_team_id = owner.id, None
        record.owning_business_unit_id = owner.business_unit_id

    def _user_of(self, record) -> User:
        """The user who works a record: its owner, or for a Key Accounts record the team
        member in Sales East (so both the team and the sales manager see the activity)."""
        return self.users_by_id.get(record.owner_user_id) or self.users["sam"]

    # -- records -----------------------------------------------------------------------

    def accounts_(self) -> None:
        by_name: dict[str, Account] = {}
        for i, (name, domain, industry, city, country, parent) in enumerate(ACCOUNTS):
            owner_key = (ACCOUNT_OWNERS[i % len(ACCOUNT_OWNERS)] if parent is None
                         else by_name[parent].demo_owner_key)
            account = Account(
                name=name, account_number=f"ACC-{10001 + i}", email1=f"info@{domain}",
                phone=f"+1 555 01{i:02d} {1000 + i * 37 % 9000:04d}", website=f"https://www.{domain}",
                industry=industry, city=city, country=country, is_active=True,
                annual_revenue=Decimal(self.rnd.randrange(2, 900)) * Decimal(250_000),
                parent_account_id=by_name[parent].id if parent else None,
                description=f"{industry} customer based in {city}.")
            account.demo_owner_key = owner_key
            account.demo_domain = domain
            self._own(account, self._owner(owner_key))
            self._stamp(account, self.days_ago(self.rnd.randint(120, 700)), self.users["admin"])
            db.session.add(account)
            db.session.flush()  # children need the parent's id
            by_name[name] = account
            self.accounts.append(account)

    def contacts_(self) -> None:
        names = [(f, l) for f in FIRST_NAMES for l in LAST_NAMES]
        self.rnd.shuffle(names)
        for i in range(COUNTS["contact"]):
            # Every account has at least two contacts; the rest go to the busier ones.
            account = self.accounts[i % len(self.accounts)] if i < 2 * len(self.accounts) \
                else self.rnd.choice(self.accounts[:30])
            first, last = names[i]
            contact = Contact(
                first_name=first, last_name=last, full_name=f"{first} {last}",
                job_title=self.rnd.choice(JOB_TITLES),
                email1=f"{first.lower()}.{last.lower()}@{account.demo_domain}",
                phone=f"+1 555 02{i % 100:02d} {2000 + i:04d}",
                mobile_phone=f"+1 555 03{i % 100:02d} {3000 + i:04d}" if i % 3 == 0 else None,
                city=account.city, parent_account_id=account.id, is_active=i % 40 != 39)
            self._own(contact, self._owner(account.demo_owner_key))
            self._stamp(contact, account.created_on + timedelta(days=self.rnd.randint(1, 100)),
                        self.users["admin"])
            self.contacts.append(contact)
            self.contacts_of.setdefault(account.id, []).append(contact)
        db.session.add_all(self.contacts)
        self.spare_names = names[len(self.contacts):]  # leads are other people

    def leads_(self) -> None:
        owners = ("sam", "sara", "sam", "sara", "mia")
        sources = ("email", "web", "phone", "referral", "event", "other")
        statuses = ("new", "new", "contacted", "contacted", "qualified", "disqualified")
        for i in range(COUNTS["lead"]):
            company, domain = LEAD_COMPANIES[i % len(LEAD_COMPANIES)]
            first, last = self.spare_names[i]
            lead = Lead(first_name=first, last_name=last, full_name=f"{first} {last}",
                        company_name=company, job_title=self.rnd.choice(JOB_TITLES),
                        topic=f"Interested in {self.rnd.choice(PRODUCTS).lower()}",
                        email1=f"{first.lower()}.{last.lower()}@{domain}",
                        phone=f"+1 555 04{i:02d} {4000 + i:04d}", status=statuses[i % 6],
                        source=sources[i % 6], is_active=statuses[i % 6] != "disqualified")
            owner = self.users[owners[i % len(owners)]]
            self._own(lead, owner)
            self._stamp(lead, self.days_ago(self.rnd.randint(5, 80)), owner)
            self.leads.append(lead)
        db.session.add_all(self.leads)

    def opportunities_(self) -> None:
        stages = ("qualify", "develop", "propose", "close")
        sam_accounts = [a for a in self.accounts if a.owner_user_id == self.users["sam"].id]
        for i in range(COUNTS["opportunity"]):
            if i == 0:
                account, name = sam_accounts[0], CONTOSO_DEAL
            else:
                account = self.accounts[(i * 7) % len(self.accounts)]
                name = f"{account.name}: {PRODUCTS[i % len(PRODUCTS)]}"
            status = "open" if i % 8 not in (6, 7) else ("won" if i % 8 == 6 else "lost")
            stage = stages[i % 4] if status == "open" else "close"
            opp = Opportunity(
                name=name, customer_account_id=account.id, status=status, stage=stage,
                estimated_value=Decimal(self.rnd.randrange(8, 400)) * Decimal(1000),
                estimated_close_date=(self.anchor + timedelta(days=self.rnd.randint(-30, 120))).date(),
                probability={"qualify": 20, "develop": 40, "propose": 60, "close": 80}[stage]
                if status == "open" else (100 if status == "won" else 0),
                is_active=status == "open",
                description=f"{PRODUCTS[i % len(PRODUCTS)]} for {account.name}.")
            owner = self.users["sam"] if i == 0 else self._owner(account.demo_owner_key)
            self._own(opp, owner)
            self._stamp(opp, self.days_ago(self.rnd.randint(60, 100)), self._user_of_key(owner))
            opp.demo_account = account
            self.opportunities.append(opp)
        db.session.add_all(self.opportunities)

    def _user_of_key(self, owner) -> User:
        return self.users["mia"] if isinstance(owner, Team) else owner

    def support(self) -> None:
        self.queue = Queue(name="Support", email=f"support@{DOMAIN}", is_active=True,
                           description="Customer support mailbox: new mail becomes a case.")
        self._own(self.queue, self.care)
        self._stamp(self.queue, self.days_ago(400), self.users["admin"])
        db.session.add(self.queue)
        statuses = ("in_progress", "in_progress", "on_hold", "waiting", "resolved", "canceled")
        for i in range(COUNTS["case"]):
            account = self.accounts[(i * 11 + 3) % len(self.accounts)]
            contact = self.contacts_of[account.id][i % len(self.contacts_of[account.id])]
            hexpart = hashlib.sha256(f"case-{i}".encode()).hexdigest()[:6].upper()
            case = Case(title=CASE_TITLES[i % len(CASE_TITLES)],
                        ticket_number=f"CAS-{1001 + i:05d}-{hexpart}",
                        customer_account_id=None if i % 5 == 4 else account.id,
                        customer_contact_id=contact.id if i % 5 == 4 else None,
                        status=statuses[i % 6], priority=("high", "normal", "normal", "low")[i % 4],
                        origin=("email", "phone", "web")[i % 3],
                        is_active=statuses[i % 6] not in ("resolved", "canceled"),
                        description=f"Reported by {contact.full_name} of {account.name}.")
            self._own(case, self.users["chris"])
            self._stamp(case, self.days_ago(self.rnd.randint(3, 85)), self.users["chris"])
            case.demo_contact, case.demo_account = contact, account
            self.cases.append(case)
        db.session.add_all(self.cases)
        db.session.flush()
        # Service works the cases' customers: share them (read, link to) with Customer Care.
        shared = set()
        for case in self.cases:
            for table, record in (("account", case.demo_account), ("contact", case.demo_contact)):
                if (table, record.id) not in shared:
                    shared.add((table, record.id))
                    db.session.add(RecordShare(table_name=table, record_id=record.id,
                                               team_id=self.care.id, can_read=True,
                                               can_append_to=True,
                                               granted_by_id=self.users["admin"].id))

    # -- activities ----------------------------------------------------------------------

    def _activity(self, activity, owner: User, regarding: tuple[str, object] | None,
                  when: datetime) -> None:
        self._own(activity, owner)
        self._stamp(activity, min(when, self.now), owner)
        activity.occurred_on = when
        if regarding:
            activity.set_regarding(regarding[0], regarding[1].id)
        db.session.add(activity)
        self.activities += 1

    @staticmethod
    def _party(role: str, who, address: str | None = None) -> ActivityParty:
        kind = {User: "user", Contact: "contact", Account: "account", Lead: "lead",
                Queue: "queue"}[type(who)]
        party = ActivityParty(role=role, name=getattr(who, "full_name", None) or who.name,
                              address=address or (who.email if kind in ("user", "queue")
                                                  else who.email1))
        party.set_party(kind, who.id)
        return party

    def _thread_index(self, when: datetime, guid: bytes, replies: int) -> str:
        """An Outlook Thread-Index: a 22-byte header (FILETIME, conversation GUID) and one
        5-byte block per reply."""
        filetime = int((when - datetime(1601, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10**7)
        raw = b"\x01" + filetime.to_bytes(8, "big")[:5] + guid
        for n in range(replies):
            raw += ((n + 1) * 0x1234 << 8 | self.rnd.randrange(256)).to_bytes(5, "big")
        return base64.b64encode(raw).decode()

    def _body(self, greeting: str, lines: list[str], signature: str) -> tuple[str, str]:
        text = f"Hi {greeting},\n\n" + "\n\n".join(lines) + f"\n\nBest regards,\n{signature}"
        body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
        markup = (f"<div><p>Hi {html.escape(greeting)},</p>{body}"
                  f"<p>Best regards,<br>{html.escape(signature)}</p></div>")
        return markup, text

    def email_thread(self, number: int, thread: _Thread, start: datetime, messages: int) -> None:
        guid = hashlib.md5(f"demo-thread-{number}".encode()).digest()
        gaps = [timedelta(hours=self.rnd.randint(2, 40), minutes=self.rnd.randint(0, 59))
                for _ in range(messages)]
        # The whole thread happened before today.
        start = min(start, self.anchor - sum(gaps[:-1], timedelta()) - timedelta(hours=1))
        ids: list[str] = []
        parent: Email | None = None
        token = None
        when = start
        customer = thread.people[0]
        inbound_first = thread.inbound_first
        customer_address = customer.email1
        crm_side = thread.queue or thread.user
        for n in range(messages):
            outgoing = (n % 2 == 1) if inbound_first else (n % 2 == 0)
            if outgoing and token is None and self.org.use_tracking_token:
                self.token_number += 1
                token = f"{self.org.tracking_token_prefix}{self.token_number:07d}"
            subject = ("RE: " if n else "") + thread.subject + (f" {token}" if token else "")
            local = hashlib.sha1(f"demo-email-{number}-{n}".encode()).hexdigest()[:20]
            domain = DOMAIN if outgoing else customer_address.split("@")[1]
            message_id = f"{local}@mail.{domain}"
            sender = thread.user if outgoing else customer
            line = thread.lines[n % len(thread.lines)]
            html_body, text_body = self._body(
                customer.first_name if outgoing else thread.user.first_name, [line],
                sender.full_name)
            email = Email(
                subject=subject, direction="outgoing" if outgoing else "incoming",
                status="sent" if outgoing else "received", state="completed",
                html_body=html_body, text_body=text_body, message_id=message_id,
                dedupe_key=message_id, in_reply_to=ids[-1] if ids else None,
                references=" ".join(ids[-10:]) or None,
                conversation_index=self._thread_index(start, guid, n),
                conversation_id=guid.hex(), tracking_token=token,
                sent_on=when, received_on=None if outgoing else when + timedelta(seconds=4),
                correlation_method="in_reply_to" if parent else None,
                sender_address=(thread.user.email if outgoing else customer_address),
                actual_end=when)
            parties = [self._party("from", thread.user if outgoing else customer)]
            recipients = [customer] if outgoing else [crm_side]
            parties += [self._party("to", r) for r in recipients]
            if thread.queue is not None and outgoing:
                parties.append(self._party("cc", thread.queue))
            parties += [self._party("cc", c) for c in thread.people[1:]]
            email.parties = parties
            email.to_recipients = "; ".join(p.address for p in parties if p.role == "to")
            self._activity(email, thread.user, thread.regarding, when)
            if parent is not None:
                self.replies.append((email, parent))
            ids.append(message_id)
            parent = email
            when = when + gaps[n]

    def emails(self) -> None:
        r = self.rnd
        threads: list[tuple[_Thread, int, int]] = []  # thread, days ago, messages
        for i, opp in enumerate(self.opportunities[:30]):
            people = self.contacts_of[opp.demo_account.id][:1 + i % 2]
            user = self._user_of(opp)
            product = PRODUCTS[i % len(PRODUCTS)].lower()
            subject = "Contoso deal: next steps" if opp.name == CONTOSO_DEAL else \
                f"{product.capitalize()} for {opp.demo_account.name}"
            lines = [f"Thanks for your time today. As discussed, here is where we are on the {product}.",
                     f"Thanks! We have {3 + i % 9} sites. Could you send pricing that covers all of them?",
                     "Here are the revised figures for every site, with the volume discount applied.",
                     "Thank you. We are aiming for a decision by the end of the quarter."]
            threads.append((_Thread(subject, ("opportunity", opp), user, people, lines=lines),
                            r.randint(2, 85), 1 + (i * 3) % 4))
        for i, case in enumerate(self.cases[:20]):
            lines = [f"We have a problem: {case.title.lower()}. Could you help us quickly?",
                     f"Thanks for reporting this. I opened case {case.ticket_number} and am looking into it.",
                     "It happened again this morning, same symptoms as before.",
                     "A fix is on its way; please confirm once it works on your side."]
            threads.append((_Thread(case.title, ("case", case), self.users["chris"],
                                    [case.demo_contact], queue=self.queue, lines=lines,
                                    inbound_first=True),
                            r.randint(1, 80), 1 + i % 4))
        for i, account in enumerate(self.accounts[:12]):
            contacts = self.contacts_of[account.id]
            lines = [f"Here is the summary of our meeting with the {account.name} team.",
                     "Thanks, that matches our notes. We will review the contract terms internally.",
                     "Happy to set up a call with our finance team next week."]
            threads.append((_Thread(f"Account review: {account.name}", ("account", account),
                                    self._user_of(account), contacts[:2], lines=lines),
                            r.randint(5, 88), 1 + i % 3))
        for i, contact in enumerate(self.contacts[50:60]):
            lines = ["Good to meet you at the trade show last week.",
                     "Likewise! Please send me your product catalogue.",
                     "Here it is. I marked the items we discussed."]
            threads.append((_Thread("Nice meeting you", ("contact", contact),
                                    self._user_of(contact), [contact], lines=lines),
                            r.randint(5, 89), 1 + i % 3))
        for i, lead in enumerate(self.leads[:8]):
            lines = [f"I found your website and would like to learn more about {lead.topic[14:]}.",
                     "Thanks for reaching out! When would be a good time for a short call?"]
            threads.append((_Thread(f"Enquiry from {lead.company_name}", ("lead", lead),
                                    self._user_of(lead), [lead], lines=lines,
                                    inbound_first=True),
                            r.randint(1, 60), 1 + i % 2))
        self.replies: list[tuple[Email, Email]] = []
        for number, (thread, days, messages) in enumerate(threads):
            self.email_thread(number, thread, self.days_ago(days), messages)
        db.session.flush()  # one flush for all, then replies point at what they answer
        for email, parent in self.replies:
            email.parent_activity_id = parent.id

    def appointments(self) -> None:
        for i in range(40):
            opp = self.opportunities[i % len(self.opportunities)]
            regarding = ("opportunity", opp) if i % 4 else ("account", opp.demo_account)
            user = self._user_of(opp)
            days = 88 - i * 2.4 if i < 34 else -(i - 33) * 2  # a few meetings still to come
            start = self.days_ago(days, hour=9 + i % 7)
            end = start + timedelta(minutes=(30, 60, 90)[i % 3])
            subject = f"{MEETING_SUBJECTS[i % len(MEETING_SUBJECTS)]}: {opp.demo_account.name}"
            location = LOCATIONS[i % len(LOCATIONS)]
            appt = Appointment(
                subject=subject, location=location, scheduled_start=start, scheduled_end=end,
                state="completed" if end < self.anchor else "open",
                actual_end=end if end < self.anchor else None,
                global_object_id=hashlib.sha1(f"demo-meeting-{i}".encode()).hexdigest() + "@" + DOMAIN,
                online_meeting_url=("https://teams.contoso.example/meet/" + f"{i:04d}")
                if location.startswith("Microsoft Teams") else None,
                description=f"Agenda: {MEETING_SUBJECTS[i % 7].lower()}, questions, next steps.")
            parties = [self._party("organizer", user)]
            parties += [self._party("required", c)
                        for c in self.contacts_of[opp.demo_account.id][:1 + i % 2]]
            if i % 5 == 0 and user is not self.users["mia"]:
                parties.append(self._party("optional", self.users["mia"]))
            appt.parties = parties
            self._activity(appt, user, regarding, start)

    def tasks(self) -> None:
        for i in range(60):
            if i % 3 == 2:
                case = self.cases[i % len(self.cases)]
                regarding, user = ("case", case), self.users["chris"]
                subject = f"{('Review support history', 'Call back about invoice', 'Confirm delivery schedule')[i % 3]}: {case.ticket_number}"
            elif i % 5 == 4:
                lead = self.leads[i % len(self.leads)]
                regarding, user, subject = ("lead", lead), self._user_of(lead), f"Qualify {lead.company_name}"
            else:
                opp = self.opportunities[i % len(self.opportunities)]
                regarding, user = ("opportunity", opp), self._user_of(opp)
                subject = TASK_SUBJECTS[i % len(TASK_SUBJECTS)]
            due = self.days_ago(85 - i * 1.6, hour=17)
            done = due < self.anchor and i % 4 != 0
            task = Task(subject=subject, scheduled_end=due, priority=("normal", "high", "low")[i % 3],
                        state="completed" if done else "open", actual_end=due if done else None,
                        percent_complete=100 if done else (0, 25, 50)[i % 3],
                        category=("Sales", "Service", "Sales")[i % 3],
                        description="Keep notes of the outcome here.")
            self._activity(task, user, regarding, due)

    def phone_calls(self) -> None:
        for i in range(50):
            if i % 4 == 3:
                case = self.cases[(i * 3) % len(self.cases)]
                regarding, user, other = ("case", case), self.users["chris"], case.demo_contact
            else:
                contact = self.contacts[(i * 13) % len(self.contacts)]
                user = self._user_of(contact)
                other = contact
                regarding = ("contact", contact) if i % 2 else (
                    "account", next(a for a in self.accounts if a.id == contact.parent_account_id))
            outgoing = i % 3 != 0
            when = self.days_ago(89 - i * 1.75)
            call = PhoneCall(subject=("Call with " if outgoing else "Call from ") + other.full_name,
                             phone_number=other.phone, direction="outgoing" if outgoing else "incoming",
                             state="completed", actual_end=when + timedelta(minutes=12),
                             description="Discussed open questions; follow-up agreed.")
            caller, called = (user, other) if outgoing else (other, user)
            call.parties = [self._party("from", caller), self._party("to", called)]
            self._activity(call, user, regarding, when)

    def build(self) -> None:
        self.organization()
        self.users_by_id = {u.id: u for u in self.users.values()}
        self.accounts_()
        self.contacts_()
        self.leads_()
        self.opportunities_()
        db.session.flush()
        self.support()
        db.session.flush()
        self.emails()
        self.appointments()
        self.tasks()
        self.phone_calls()
        db.session.flush()


def is_loaded() -> bool:
    return db.session.scalar(select(User.id).where(User.email == DEMO_SIGNINS[0][0])) is not None


def seed() -> str:
    """Load the demo organization into the current database (the caller commits). Returns a
    one-line summary, or ``"already loaded"`` when the demo is there."""
    if is_loaded():
        return "already loaded"
    org = ensure_organization(ORG_NAME)
    builder = _Builder(org)
    builder.build()
    summary = (f"Demo organization {ORG_NAME} loaded: {len(builder.users)} users, "
               f"{len(builder.accounts)} accounts, {len(builder.contacts)} contacts, "
               f"{len(builder.leads)} leads, {len(builder.opportunities)} opportunities, "
               f"{len(builder.cases)} cases, 1 queue, {builder.activities} activities.")
    return " ".join([summary, *_extras()])


def _extras() -> list[str]:
    """Other areas' parts of the demo, after the CRM records exist, in the same transaction:
    the sync engine's demo mailbox with its "Inbox/Contoso deal" tracked folder."""
    line = seed_demo_mailbox()
    db.session.flush()
    return [line] if line else []


def summary_counts() -> dict[str, int]:
    """How many of each record type the database holds (for the tests and the CLI)."""
    from sqlalchemy import func
    return {name: db.session.scalar(select(func.count()).select_from(model))
            for name, model in (("account", Account), ("contact", Contact), ("lead", Lead),
                                ("opportunity", Opportunity), ("case", Case), ("queue", Queue))}


