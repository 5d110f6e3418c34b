"""``POST /api/v1/email-files``: track an ``.eml`` or Outlook ``.msg`` file (multipart/form-data
field ``file``) regarding a record (field ``regarding``, ``type:id``), as the record page's
drop zone does, with the caller's privileges (``sync.uploads``)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for

from server.crm.activities import REGARDING_TYPES
from server.db import db
from server.i18n import N_
from server.web.api.common import invalid, parse_ref, principal
from server.sync.uploads import MAX_MAIL_FILE, track_mail_file


def upload_email_file():
    upload = request.files.get("file")
    if upload is None:
        raise invalid({"file": N_("Required: an .eml or .msg file as multipart/form-data.")})
    raw_regarding = request.form.get("regarding")
    regarding = parse_ref(raw_regarding, "regarding", REGARDING_TYPES) if raw_regarding else None
    email, created = track_mail_file(principal(), upload.stream.read(MAX_MAIL_FILE + 1),
                                     upload.filename or "", regarding)
    db.session.commit()
    body = {"id": email.id, "created": created, "subject": email.subject,
            "regarding": {"type": email.regarding_ref[0], "id": email.regarding_ref[1]}
            if email.regarding_ref else None}
    response = jsonify(body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = url_for("api.activity_get", activity_id=email.id)
    return response


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/email-files", "email_file_upload", upload_email_file, methods=["POST"])
