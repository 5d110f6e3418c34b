"""Mail on CRM pages beyond what sync brings: an ``.eml`` or Outlook ``.msg`` file dropped on
a record page (or chosen with the file input) is tracked regarding that record, and a
calendar invitation carried by a tracked email is shown on the email's page and can be
tracked as an appointment. Forms are CSRF-protected (CSRFProtect); every call runs with the
signed-in user's privileges through the same services as sync and the REST API.
"""
from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from server.crm.services import activity_actions as acts
from server.crm.services import records, tracking
from server.crm.activities import REGARDING_TYPES
from server.db import db
from server.errors import Invalid
from server.sync.acts.meetings import meeting_of
from server.sync.uploads import MAX_MAIL_FILE, track_mail_file
from server.web.auth import current_principal, login_manager

bp = Blueprint("mail_files", __name__)


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.post("/r/<type_name>/<int:record_id>/mail-files")
def upload(type_name: str, record_id: int):
    """Track the uploaded .eml/.msg files regarding the record."""
    if type_name not in REGARDING_TYPES:
        abort(404)
    p = current_principal()
    records.get(p, type_name, record_id)  # the record must be readable
    files = request.files.getlist("file")
    if not files:
        raise Invalid(_("Choose an .eml or .msg file."), {"file": _("Required.")})
    last = None
    for item in files:
        data = item.stream.read(MAX_MAIL_FILE + 1)
        email, created = track_mail_file(p, data, item.filename or "", (type_name, record_id))
        db.session.commit()
        subject = email.subject or _("(no subject)")
        flash(_("Tracked “%(subject)s”.", subject=subject) if created
              else _("“%(subject)s” was already tracked.", subject=subject))
        last = email
    return redirect(url_for("pages.activity_detail", activity_id=last.id))


@bp.post("/activities/<int:activity_id>/meeting")
def track_meeting(activity_id: int):
    """Track the invitation of an email as an appointment, regarding what the email is."""
    p = current_principal()
    email = acts.get_activity(p, activity_id)
    meeting = meeting_of(email)
    if meeting is None or not meeting.uid:
        raise Invalid(_("This email carries no meeting to track."))
    people = [(a.name, a.address) for a in meeting.attendees]
    content = tracking.AppointmentContent(
        uid=meeting.uid, subject=meeting.title or email.subject or "",
        organizer=(meeting.organizer.name, meeting.organizer.address) if meeting.organizer else None,
        required=[pp for pp, a in zip(people, meeting.attendees) if a.role == "required"],
        optional=[pp for pp, a in zip(people, meeting.attendees) if a.role == "optional"],
        start=meeting.start, end=meeting.end, location=meeting.location or None,
        is_all_day=meeting.all_day)
    appointment, created = tracking.track_appointment(p, content, regarding=email.regarding_ref)
    db.session.commit()
    flash(_("The meeting was tracked as an appointment.") if created
          else _("The meeting was already tracked."))
    return redirect(url_for("pages.activity_detail", activity_id=appointment.id))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(meeting_of, "meeting_of")
    app.add_template_global(REGARDING_TYPES, "mail_regarding_types")
    app.add_template_global(MAX_MAIL_FILE // 2**20, "mail_file_limit_mb")
