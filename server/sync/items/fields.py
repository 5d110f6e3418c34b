"""The fields of an appointment, contact or task that sync with mail servers, their default
sync directions (as Dynamics 365 sets them: everything both ways, except what a mail server
cannot hold for us), and the JSON form values are compared and stored in.

A value is what the CRM column holds (str, int, bool, aware UTC datetime, date, a JSON
list or dict); ``parties`` is the organizer and attendees (role, address, name, response)."""
from __future__ import annotations

from datetime import date, datetime, timezone

# Which way a field of a synced appointment, contact or task goes (Dynamics' field sync).
FIELD_DIRECTIONS = ("none", "to_crm", "to_server", "both")

FIELDS: dict[str, tuple[str, ...]] = {
    "appointment": ("subject", "location", "description", "scheduled_start", "scheduled_end",
                    "is_all_day", "time_zone", "recurrence_rule", "recurrence_exceptions",
                    "reminder_minutes", "show_as", "sensitivity", "categories", "state",
                    "parties"),
    "task": ("subject", "description", "scheduled_start", "scheduled_end", "task_status",
             "percent_complete", "priority", "state", "actual_end", "reminder_minutes",
             "sensitivity", "categories"),
    "contact": ("first_name", "last_name", "full_name", "job_title", "company_name",
                "email1", "email2", "email3", "phone", "mobile_phone", "home_phone", "street",
                "city", "state_province", "postal_code", "country", "birthday", "website",
                "description"),
}

# Where Dynamics differs from "both": the organizer of a meeting is set where it is sent
# (the mail server), and a contact's company is the CRM's account where one matches.
DEFAULT_DIRECTIONS: dict[tuple[str, str], str] = {
    ("appointment", "parties"): "both",
    ("contact", "company_name"): "both",
}

LABELS = {
    "scheduled_start": "Start", "scheduled_end": "End / due", "is_all_day": "All day",
    "recurrence_rule": "Recurrence", "recurrence_exceptions": "Changed and cancelled occurrences",
    "reminder_minutes": "Reminder", "show_as": "Show as", "state": "Status (open, cancelled)",
    "task_status": "Task status", "actual_end": "Completed on", "parties": "Organizer and attendees",
    "email1": "Email", "email2": "Email 2", "email3": "Email 3", "phone": "Business phone",
    "mobile_phone": "Mobile phone", "home_phone": "Home phone", "description": "Notes / body",
}


def label(field: str) -> str:
    return LABELS.get(field) or field.replace("_", " ").capitalize()


def direction(kind: str, field: str, overrides: dict[tuple[str, str], str]) -> str:
    """The sync direction of ``field``: the organization's, else the default."""
    chosen = overrides.get((kind, field)) or DEFAULT_DIRECTIONS.get((kind, field), "both")
    return chosen if chosen in FIELD_DIRECTIONS else "both"


def to_json(value):
    """``value`` in the form it is compared and stored in (``ItemLink.synced_values``)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def encode(values: dict) -> dict:
    return {name: to_json(value) for name, value in values.items()}


def from_json(field: str, value):
    """A stored value back in the column's type."""
    if value is None:
        return None
    if field in ("scheduled_start", "scheduled_end", "actual_end"):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if field == "birthday":
        return date.fromisoformat(value)
    return value
