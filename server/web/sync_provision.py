"""Mailbox provisioning pages under ``/admin/sync``: the organization's defaults for new
mailboxes, bulk jobs (approve, Test & Enable, apply defaults) over a selection of the
mailbox list or a whole profile with a page that shows their progress and a result per
mailbox, imports from CSV and fetchmailrc files with their report, and the forwarding rule
of a user's mailbox (deploy, check, remove).

Views parse the form, call one service of :mod:`server.sync.admin` (``provision``,
``jobs``, ``imports``, ``forward_rules``: each checks the privileges) and render or
redirect; every form posts with a CSRF token.
"""
from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from server.db import db
from server.errors import Forbidden, Invalid, ServiceError
from server.i18n import N_
from server.sync.admin import forward_rules, imports, jobs, provision
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.admin import profiles as profile_admin
from server.web import sync_admin
from server.web.auth import current_principal, login_manager
from server.web.languages import localize_fields, localize

bp = Blueprint("sync_provision", __name__, url_prefix="/admin/sync")
IMPORT_KINDS = {"csv": (N_("CSV file"), imports.import_csv),
                "fetchmailrc": ("fetchmailrc", imports.import_fetchmailrc)}


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.context_processor
def _common():
    return sync_admin.common()


def _page_context(p) -> dict:
    return {"profiles": [pr for pr, _ in profile_admin.list_profiles(p)],
            "jobs": jobs.recent(p), "kinds": jobs.KIND_LABELS,
            "can_defaults": provision.can_provision(p), "import_kinds": IMPORT_KINDS}


@bp.route("/provisioning", methods=["GET", "POST"])
def provisioning():
    """The defaults for new mailboxes, bulk jobs over a profile, and imports."""
    p = current_principal()
    if not mailbox_admin.can_administer(p) and not p.has("approve_email_addresses"):
        raise Forbidden("Mailbox provisioning is for mailbox administrators.")
    errors, values = {}, provision.defaults_form()
    if request.method == "POST":
        values = {k: v for k, v in request.form.to_dict().items() if k != "csrf_token"}
        try:
            provision.update_defaults(p, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"default_server_profile_id": exc.message})
        else:
            db.session.commit()
            flash(_("The defaults for new mailboxes were saved."), "success")
            return redirect(url_for("sync_provision.provisioning"))
    return render_template("sync/provisioning.html", values=values, errors=errors,
                           **_page_context(p)), 422 if errors else 200


@bp.post("/jobs")
def job_start():
    """A bulk job over the mailboxes chosen on the list, or over a profile."""
    p = current_principal()
    form = request.form
    ids = [int(v) for v in form.getlist("mailbox_ids") if v.isdigit() and len(v) < 10]
    profile_id = form.get("profile_id", "")
    try:
        job = jobs.start(p, form.get("kind", ""), mailbox_ids=ids or None,
                         profile_id=int(profile_id) if profile_id.isdigit() and
                         len(profile_id) < 10 else None)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        back = "sync_provision.provisioning" if form.get("back") == "provisioning" \
            else "sync_admin.mailboxes"
        return redirect(url_for(back))
    db.session.commit()
    flash(_("%(description)s: %(total)s mailbox(es), running in the background.",
            description=localize(job.description), total=job.total), "success")
    return redirect(url_for("sync_provision.job", job_id=job.id))


def _sentence(progress: jobs.Progress) -> str:
    return _("%(finished)s of %(total)s done (%(percent)s%%): %(done)s succeeded, %(failed)s "
             "failed, %(skipped)s skipped.", finished=progress.finished, total=progress.job.total,
             percent=progress.percent, done=progress.done, failed=progress.failed,
             skipped=progress.skipped)


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    progress, items = jobs.progress(current_principal(), job_id)
    return render_template("sync/job.html", progress=progress, items=items,
                           sentence=_sentence(progress))


@bp.get("/jobs/<int:job_id>/state")
def job_state(job_id: int):
    """The job's progress for its page's script (it polls while the job runs)."""
    progress, _ = jobs.progress(current_principal(), job_id)
    return jsonify({"finished": progress.job.finished_on is not None,
                    "finished_items": progress.finished, "percent": progress.percent,
                    "sentence": _sentence(progress)})


@bp.post("/imports")
def import_file():
    """Import mailboxes from an uploaded CSV file or fetchmailrc; the report is the page."""
    p = current_principal()
    kind = request.form.get("kind", "")
    upload = request.files.get("file")
    if kind not in IMPORT_KINDS or upload is None or not upload.filename:
        flash(_("Choose the kind of file and the file to import."), "error")
        return redirect(url_for("sync_provision.provisioning"))
    label, run = IMPORT_KINDS[kind]
    try:
        report = run(p, upload.read(imports.MAX_BYTES + 1))
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("sync_provision.provisioning"))
    db.session.commit()
    return render_template("sync/import_report.html", report=report, label=label,
                           filename=upload.filename[:200])


@bp.post("/mailboxes/<int:mailbox_id>/forward-rule/<action>")
def forward_rule(mailbox_id: int, action: str):
    """Deploy, check or remove the forwarding rule on the user's mail server."""
    actions = {"deploy": forward_rules.deploy_rule, "check": forward_rules.check_rule,
               "remove": forward_rules.remove_rule}
    if action not in actions:
        return sync_admin._refused(Invalid("Unknown action."), "sync_admin.mailbox_edit",
                                   mailbox_id=mailbox_id)
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    try:
        result = actions[action](p, box)
    except Invalid as exc:
        return sync_admin._refused(exc, "sync_admin.mailbox_edit", mailbox_id=mailbox_id)
    db.session.commit()
    flash(localize(result.message), "success" if result.ok else "error")
    return redirect(url_for("sync_admin.mailbox_edit", mailbox_id=mailbox_id))


def init_app(app) -> None:
    app.register_blueprint(bp)
