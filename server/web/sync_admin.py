"""Server-side sync pages under ``/admin/sync``: the dashboard (mailbox states, alerts,
quarantine, "why was this email (not) tracked?", charts of the last 48 hours), email server
profiles, mailboxes (settings, Test & Enable, approval, sync now, deletion after a page
saying what goes with it), each user's tracking options and folder tracking rules, each
person's choice of alert emails, and the tracking blocklist.

Views parse the form, call one service of :mod:`server.sync.admin` (profiles, mailboxes,
folder rules, blocklist, quarantine, dashboard: each checks the privileges) and render or
redirect; every form posts with a CSRF token. Secrets are never put into a page: password
inputs are always empty, and say whether one is stored.
"""
from __future__ import annotations

from math import ceil

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from server.crm.registry import RECORD_TYPES
from server.db import db
from server.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from server.i18n import N_
from server.security.models import BusinessUnit
from server.security.privileges import Depth
from server.sync.admin import alert_mail
from server.sync.admin import blocklist as block_admin
from server.sync.admin import dashboard as dashboard_admin
from server.sync.admin import folder_rules as rule_admin
from server.sync.admin import forms as admin_forms
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.admin import profiles as profile_admin
from server.sync.admin import quarantine as quarantine_admin
from server.sync.admin.jobs import KIND_LABELS
from server.sync.mail.rules import chain_description
from server.sync.models import (ACTS_METHODS, ACTS_PROTOCOLS, AUTH_METHODS, INCOMING_METHODS, INCOMING_PROTOCOLS,
                                OUTGOING_METHODS, OUTGOING_PROTOCOLS, SECURITY, TRACKING_OPTIONS,
                                FolderRule)
from server.web.auth import current_principal, login_manager
from server.web.languages import localize_fields, localize
from server.web.params import int_arg
from server.web.sync_charts import dashboard_charts

bp = Blueprint("sync_admin", __name__, url_prefix="/admin/sync")

LABELS = {  # translated where shown (the sync_label filter)
    "imap": "IMAP", "pop3": "POP3", "maildir": N_("Maildir (local store)"), "graph":
    N_("Microsoft Graph (Exchange Online)"), "ews": "Exchange Web Services", "smtp": "SMTP",
    "caldav": N_("CalDAV/CardDAV (appointments, contacts and tasks)"),
    "tls": N_("TLS (implicit)"), "starttls": "STARTTLS", "none": N_("None"),
    "password": N_("User name and password"), "oauth2": N_("OAuth 2 (Microsoft Entra ID)"),
    "addin": N_("Outlook add-in"), "server_side_sync": N_("Server-side synchronization"),
    "forward_mailbox": N_("Forward mailbox"), "forward": N_("Forward mailbox (no owner)"),
    "deployed": N_("Deployed"), "removed": N_("Removed"), "failed": N_("Failed"),
    "all": N_("All email messages"), "crm_responses": N_("Email messages in response to CRM email"),
    "from_crm_records": N_("Email messages from CRM leads, contacts and accounts"),
    "from_email_enabled": N_("Email messages from CRM records that are email enabled"),
    "not_run": N_("Not run"), "success": N_("Success"), "failure": N_("Failure"),
    "user": N_("User"), "queue": N_("Queue"),
}
CHOICES = {"incoming_protocol": INCOMING_PROTOCOLS + ACTS_PROTOCOLS, "outgoing_protocol": OUTGOING_PROTOCOLS,
           "security": SECURITY, "auth_method": AUTH_METHODS, "incoming_method": INCOMING_METHODS,
           "outgoing_method": OUTGOING_METHODS, "acts_method": ACTS_METHODS,
           "tracking_option": TRACKING_OPTIONS}
REGARDING_KINDS = ("account", "contact", "lead", "opportunity", "case")


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.app_template_filter("sync_label")
def _label(value) -> str:
    if not value:
        return "—"
    return _(LABELS[value]) if value in LABELS else str(value).replace("_", " ").capitalize()


@bp.app_context_processor
def _nav():
    """The "Email tracking" link of the main navigation: the dashboard for those who may
    see it, else the user's own tracking options (no query: the page finds the mailbox)."""
    if not (current_user and current_user.is_authenticated):
        return {"sync_tracking_url": None}
    dashboard_ok = current_principal().has("view_sync_dashboard")
    return {"sync_tracking_url": url_for("sync_admin.dashboard" if dashboard_ok
                                         else "sync_admin.my_mailbox")}


@bp.context_processor
def common():
    if not current_user.is_authenticated:  # an error page for a signed-out request
        return {"choices": CHOICES}
    p = current_principal()
    return {"choices": CHOICES, "can_dashboard": p.has("view_sync_dashboard"),
            "can_profiles": profile_admin.can_manage_profiles(p),
            "can_mailboxes": p.depth("mailbox", "read") >= Depth.BUSINESS_UNIT,
            "can_blocklist": p.has("view_sync_dashboard") or block_admin.can_edit_blocklist(p),
            "can_item_settings": any(p.has(n) for n in ("sync_appointments", "sync_contacts",
                                                         "sync_tasks"))}


def _done(message: str, endpoint: str, **values):
    """Commit, say ``message`` (a service's stored English sentence is read in the
    reader's language) and go to ``endpoint``."""
    db.session.commit()
    flash(localize(message), "success")
    return redirect(url_for(endpoint, **values))


def _refused(exc: ServiceError, endpoint: str, **values):
    db.session.rollback()
    flash(localize(exc.message), "error")
    return redirect(url_for(endpoint, **values))


def _page() -> int:
    return int_arg("page", 1, maximum=10_000)


# --------------------------------------------------------------------------- dashboard

@bp.get("/")
def dashboard():
    p = current_principal()
    summary = dashboard_admin.overview(p)
    boxes, total, figs = mailbox_admin.list_mailboxes(p, status=request.args.get("status", ""),
                                                      size=25)
    q = request.args.get("q", "").strip()[:300]
    decisions = quarantine_admin.find_decisions(p, q) if q else []
    return render_template(
        "sync/dashboard.html", summary=summary, boxes=boxes, total=total, figures=figs,
        alerts=dashboard_admin.alerts_for(p), quarantined=quarantine_admin.quarantined(p), q=q,
        decisions=decisions,
        runs=dashboard_admin.recent_runs(p), charts=dashboard_charts(dashboard_admin.hourly(p)),
        activity_url=_activity_url)


def _activity_url(activity_id: int) -> str | None:
    if "pages.activity_detail" in current_app.view_functions:
        return url_for("pages.activity_detail", activity_id=activity_id)
    return None


@bp.get("/decisions")
def decisions():
    p = current_principal()
    q = request.args.get("q", "").strip()[:300]
    mailbox_id = int_arg("mailbox")
    mailbox = mailbox_admin.get_mailbox(p, mailbox_id) if mailbox_id else None
    rows = quarantine_admin.find_decisions(p, q, mailbox_id) if (q or mailbox) else []
    items = quarantine_admin.find_items(p, q, mailbox_id) if (q or mailbox) else []
    return render_template("sync/decisions.html", q=q, rows=rows, mailbox=mailbox, items=items,
                           activity_url=_activity_url, chain=chain_description())


@bp.post("/alerts/<int:alert_id>/acknowledge")
def acknowledge(alert_id: int):
    try:
        dashboard_admin.acknowledge(current_principal(), alert_id)
    except (Invalid, NotFound) as exc:
        return _refused(exc, _back())
    return _done(_("The alert was dismissed."), _back())


@bp.post("/quarantine/<int:quarantine_id>/retry")
def retry(quarantine_id: int):
    try:
        outcome = quarantine_admin.retry(current_principal(), quarantine_id)
    except Invalid as exc:
        return _refused(exc, "sync_admin.dashboard")
    return _done(_("Processed again: %(reason)s", reason=localize(outcome.reason)), "sync_admin.dashboard")


@bp.post("/quarantine/<int:quarantine_id>/discard")
def discard(quarantine_id: int):
    try:
        quarantine_admin.discard(current_principal(), quarantine_id)
    except Invalid as exc:
        return _refused(exc, "sync_admin.dashboard")
    return _done(_("The message was discarded."), "sync_admin.dashboard")


def _back() -> str:
    """Where a one-button action returns: the page it was made from (ours only)."""
    return "sync_admin.mailboxes" if request.form.get("back") == "mailboxes" \
        else "sync_admin.dashboard"


# --------------------------------------------------------------------------- profiles

@bp.get("/profiles")
def profiles():
    p = current_principal()
    if not profile_admin.can_manage_profiles(p):
        raise Forbidden("You do not have the privileges to manage email server profiles.")
    return render_template("sync/profiles.html", profiles=profile_admin.list_profiles(p))


@bp.route("/profiles/new", methods=["GET", "POST"])
def profile_new():
    p = current_principal()
    units = admin_forms.creatable_units(p, "email_server_profile")
    if not units:
        raise Forbidden("You cannot create email server profiles.")
    errors, values = {}, profile_admin.profile_form(None)
    if request.method == "POST":
        values = _without_secrets(request.form, profile_admin.PROFILE_SECRETS)
        try:
            profile = profile_admin.create_profile(p, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"name": exc.message})
        else:
            return _done(_("The profile %(name)s was created.", name=profile.name), "sync_admin.profile_edit",
                         profile_id=profile.id)
    return render_template("sync/profile_edit.html", profile=None, values=values, errors=errors,
                           units=units, can_write=True), 422 if errors else 200


@bp.route("/profiles/<int:profile_id>", methods=["GET", "POST"])
def profile_edit(profile_id: int):
    p = current_principal()
    profile = profile_admin.get_profile(p, profile_id)
    can_write = _can(p, "write", profile)
    errors, values = {}, profile_admin.profile_form(profile)
    if request.method == "POST":
        values = _without_secrets(request.form, profile_admin.PROFILE_SECRETS)
        try:
            profile_admin.update_profile(p, profile, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            profile = profile_admin.get_profile(p, profile_id)
            errors = localize_fields(exc.fields or {"name": exc.message})
        else:
            return _done(_("The profile %(name)s was saved.", name=profile.name), "sync_admin.profile_edit",
                         profile_id=profile.id)
    units = admin_forms.creatable_units(p, "email_server_profile")
    if profile.owning_business_unit_id not in {u.id for u in units}:
        units = [db.session.get(BusinessUnit, profile.owning_business_unit_id), *units]
    return render_template("sync/profile_edit.html", profile=profile, values=values,
                           errors=errors, units=units, can_write=can_write,
                           can_delete=_can(p, "delete", profile)), 422 if errors else 200


@bp.post("/profiles/<int:profile_id>/try-again")
def profile_try_again(profile_id: int):
    """Sign in once more with a service account a server refused."""
    p = current_principal()
    profile = profile_admin.get_profile(p, profile_id)
    if profile_admin.try_service_account_again(p, profile):
        said = _("The service account of %(name)s is tried again with the next run of one of "
                 "its mailboxes; the others follow at their next retry.", name=profile.name)
    else:
        said = _("The service account of %(name)s was not held.", name=profile.name)
    return _done(said, "sync_admin.profile_edit", profile_id=profile.id)


@bp.route("/profiles/<int:profile_id>/delete", methods=["GET", "POST"])
def profile_delete(profile_id: int):
    """Confirm, then delete a profile; one in use is refused with the mailboxes using it."""
    def page(p, profile) -> dict:
        mailboxes, others = profile_admin.profile_users(p, profile)
        return {"profile": profile, "mailboxes": mailboxes, "others": others}
    return _confirm_delete(profile_id, profile_admin.profile_to_delete,
                           profile_admin.delete_profile, "sync/profile_delete.html", page,
                           lambda profile: _("The profile %(name)s was deleted.", name=profile.name),
                           "sync_admin.profiles")


def _confirm_delete(record_id: int, load, delete, template: str, context, done, endpoint: str):
    """GET: the confirmation page; POST: delete (a refusal re-renders it with the reason,
    409). ``load`` checks the delete privilege first, for both."""
    p = current_principal()
    record = load(p, record_id)
    problem = None
    if request.method == "POST":
        message = done(record)
        try:
            delete(p, record_id)
        except Conflict as exc:
            db.session.rollback()
            problem = exc.message
            record = load(p, record_id)
        else:
            return _done(message, endpoint)
    return render_template(template, problem=problem, **context(p, record)), \
        409 if problem else 200


def _can(p, privilege: str, record) -> bool:
    from server.security import authz
    return authz.can(p, privilege, record)


def _without_secrets(form, secrets) -> dict:
    """What a re-rendered form shows: the submitted values minus every secret."""
    return {k: v for k, v in form.to_dict().items() if k not in secrets and k != "csrf_token"}


# --------------------------------------------------------------------------- mailboxes

@bp.get("/mailboxes")
def mailboxes():
    p = current_principal()
    q, status = request.args.get("q", "").strip()[:200], request.args.get("status", "")
    page = _page()
    boxes, total, figs = mailbox_admin.list_mailboxes(p, q=q, status=status, page=page)
    return render_template("sync/mailboxes.html", boxes=boxes, total=total, figures=figs,
                           page=page, pages=max(1, ceil(total / admin_forms.PAGE)),
                           args={"q": q, "status": status},
                           can_create=bool(admin_forms.creatable_units(p, "mailbox")),
                           approval_required=mailbox_admin.approval_required(),
                           bulk_kinds=KIND_LABELS)


@bp.get("/my")
def my_mailbox():
    box = mailbox_admin.my_mailbox(current_principal())
    if box is None:  # a page of the section that says so, not an error
        can_create = bool(admin_forms.creatable_units(current_principal(), "mailbox"))
        return render_template("sync/no_mailbox.html", can_create=can_create)
    return redirect(url_for("sync_admin.mailbox_tracking", mailbox_id=box.id))


@bp.route("/mailboxes/new", methods=["GET", "POST"])
def mailbox_new():
    p = current_principal()
    if not admin_forms.creatable_units(p, "mailbox"):
        raise Forbidden("You cannot create mailboxes.")
    errors, values = {}, mailbox_admin.mailbox_form(None)
    if request.method == "POST":
        values = _without_secrets(request.form, ("password",))
        try:
            box = mailbox_admin.create_mailbox(p, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"email_address": exc.message})
        else:
            return _done(_("The mailbox %(address)s was created: test and enable it.", address=box.email_address),
                         "sync_admin.mailbox_edit", mailbox_id=box.id)
    return render_template("sync/mailbox_new.html", values=values, errors=errors,
                           profiles=[pr for pr, _ in profile_admin.list_profiles(p)]), \
        422 if errors else 200


@bp.route("/mailboxes/<int:mailbox_id>", methods=["GET", "POST"])
def mailbox_edit(mailbox_id: int):
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    errors, values = {}, mailbox_admin.mailbox_form(box)
    if request.method == "POST":
        values = _without_secrets(request.form, ("password",))
        try:
            mailbox_admin.update_mailbox(p, box, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            box = mailbox_admin.get_mailbox(p, mailbox_id)
            errors = localize_fields(exc.fields or {"name": exc.message})
        else:
            return _done(_("The mailbox was saved."), "sync_admin.mailbox_edit", mailbox_id=box.id)
    figs = mailbox_admin.figures([box.id])[box.id]
    return render_template(
        "sync/mailbox_edit.html", box=box, values=values, errors=errors, figures=figs,
        can_write=_can(p, "write", box), can_admin=mailbox_admin.can_administer(p, box),
        can_delete=_can(p, "delete", box), asks_credentials=mailbox_admin.asks_credentials(box),
        can_approve=p.has("approve_email_addresses"),
        approval_required=mailbox_admin.approval_required(box),
        profiles=[pr for pr, _ in profile_admin.list_profiles(p)],
        alerts=[a for a in dashboard_admin.alerts_for(p) if a.mailbox_id == box.id],
        runs=[r for r, _ in dashboard_admin.recent_runs(p) if r.mailbox_id == box.id]), \
        422 if errors else 200


@bp.route("/mailboxes/<int:mailbox_id>/delete", methods=["GET", "POST"])
def mailbox_delete(mailbox_id: int):
    """Confirm (saying what goes and what stays), then delete a mailbox."""
    return _confirm_delete(
        mailbox_id, mailbox_admin.mailbox_to_delete, mailbox_admin.delete_mailbox,
        "sync/mailbox_delete.html",
        lambda p, box: {"box": box, "what": mailbox_admin.mailbox_deletion(box)},
        lambda box: _("The mailbox %(address)s was deleted; what it tracked stays tracked.",
                      address=box.email_address), "sync_admin.mailboxes")


def _mailbox_action(mailbox_id: int, action, message: str, endpoint="sync_admin.mailbox_edit"):
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    try:
        result = action(p, box)
    except (Invalid, Conflict) as exc:
        return _refused(exc, endpoint, mailbox_id=mailbox_id)
    return _done(message if isinstance(message, str) else message(result), endpoint,
                 mailbox_id=mailbox_id)


@bp.post("/mailboxes/<int:mailbox_id>/test")
def mailbox_test(mailbox_id: int):
    def said(result) -> str:
        parts = [localize(result.message)]
        for name, direction in ((_("Incoming"), result.incoming), (_("Outgoing"), result.outgoing),
                                (_("Appointments, contacts and tasks"), result.acts)):
            if direction is not None:
                parts.append(_("%(direction)s: %(message)s", direction=name,
                               message=localize(direction.message)))
        return " ".join(parts)
    return _mailbox_action(mailbox_id, mailbox_admin.test_and_enable, said)


@bp.post("/mailboxes/<int:mailbox_id>/approve")
def mailbox_approve(mailbox_id: int):
    return _mailbox_action(mailbox_id, mailbox_admin.approve,
                           _("The email address was approved."))


@bp.post("/mailboxes/<int:mailbox_id>/disable")
def mailbox_disable(mailbox_id: int):
    return _mailbox_action(mailbox_id, mailbox_admin.disable,
                           _("The mailbox was disabled."))


@bp.post("/mailboxes/<int:mailbox_id>/sync-now")
def mailbox_sync_now(mailbox_id: int):
    endpoint = "sync_admin.mailbox_tracking" if request.form.get("back") == "tracking" \
        else "sync_admin.mailbox_edit"
    return _mailbox_action(mailbox_id, mailbox_admin.sync_now, "The mailbox is due now: a worker "
                           "synchronizes it within seconds.", endpoint)


# --------------------------------------------------------------------------- tracking, folders

@bp.route("/mailboxes/<int:mailbox_id>/tracking", methods=["GET", "POST"])
def mailbox_tracking(mailbox_id: int):
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    errors = {}
    if request.method == "POST":
        try:
            mailbox_admin.update_tracking(p, box, request.form.to_dict())
        except Invalid as exc:
            db.session.rollback()
            box = mailbox_admin.get_mailbox(p, mailbox_id)
            errors = localize_fields(exc.fields or {})
        else:
            return _done(_("Your tracking options were saved."), "sync_admin.mailbox_tracking",
                         mailbox_id=box.id)
    return _tracking_page(p, box, errors=errors)


def _tracking_page(p, box, *, errors=None, rule_errors=None, rule_values=None, matches=(),
                   refresh=False):
    rules, titles = rule_admin.list_rules(p, box)
    can_write = _can(p, "write", box)
    folders, folder_problem = [], None
    if can_write and box.user_id is not None:
        try:
            folders = rule_admin.mailbox_folders(p, box, refresh=refresh)
        except Invalid as exc:
            folder_problem = exc.message
    tracked_keys = {r.folder_key for r in rules}
    status = 422 if (errors or rule_errors) else 200
    return render_template(
        "sync/tracking.html", box=box, rules=rules, titles=titles, can_write=can_write,
        folders=[f for f in folders if f.key not in tracked_keys], folder_problem=folder_problem,
        errors=errors or {}, rule_errors=rule_errors or {}, rule_values=rule_values or {},
        matches=matches, kinds=REGARDING_KINDS, max_rules=FolderRule.MAX_PER_USER,
        record_url=_record_url), status


def _record_url(kind: str, record_id: int) -> str | None:
    if "pages.record_detail" in current_app.view_functions:
        return url_for("pages.record_detail", type_name=kind, record_id=record_id)
    return None


@bp.post("/mailboxes/<int:mailbox_id>/folders/refresh")
def folders_refresh(mailbox_id: int):
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    try:
        rule_admin.mailbox_folders(p, box, refresh=True)
    except Invalid as exc:
        return _refused(exc, "sync_admin.mailbox_tracking", mailbox_id=mailbox_id)
    flash(_("The folder list was read again."), "success")
    return redirect(url_for("sync_admin.mailbox_tracking", mailbox_id=mailbox_id))


@bp.post("/mailboxes/<int:mailbox_id>/rules")
def rule_add(mailbox_id: int):
    p = current_principal()
    box = mailbox_admin.get_mailbox(p, mailbox_id)
    data = request.form.to_dict()
    try:
        rule = rule_admin.add_rule(p, box, data)
    except Invalid as exc:
        db.session.rollback()
        box = mailbox_admin.get_mailbox(p, mailbox_id)
        if not exc.fields:
            return _refused(exc, "sync_admin.mailbox_tracking", mailbox_id=mailbox_id)
        matches = []
        kind = data.get("regarding_type")
        if kind in REGARDING_KINDS and data.get("regarding_query"):
            title = RECORD_TYPES[kind].title_field
            matches = [(r.id, getattr(r, title))
                       for r in rule_admin.find_regarding(p, kind, data["regarding_query"])]
        return _tracking_page(p, box, rule_errors=localize_fields(exc.fields), rule_values=data,
                              matches=matches)
    return _done(_('The folder "%(folder)s" is tracked now.', folder=rule.folder_name), "sync_admin.mailbox_tracking",
                 mailbox_id=mailbox_id)


def _rule_action(rule_id: int, action, message: str):
    p = current_principal()
    rule = db.session.get(FolderRule, rule_id)
    if rule is None:
        raise NotFound()
    mailbox_id = rule.mailbox_id
    try:
        action(p, rule_id)
    except Invalid as exc:
        return _refused(exc, "sync_admin.mailbox_tracking", mailbox_id=mailbox_id)
    return _done(message, "sync_admin.mailbox_tracking", mailbox_id=mailbox_id)


@bp.post("/rules/<int:rule_id>/delete")
def rule_delete(rule_id: int):
    return _rule_action(rule_id, rule_admin.delete_rule, _("The folder is no longer tracked; "
                                                           "what was tracked from it stays "
                                                           "tracked."))


@bp.post("/rules/<int:rule_id>/enable")
def rule_enable(rule_id: int):
    return _rule_action(rule_id, lambda p, i: rule_admin.set_rule_enabled(p, i, True),
                        _("The folder rule was turned on."))


@bp.post("/rules/<int:rule_id>/disable")
def rule_disable(rule_id: int):
    return _rule_action(rule_id, lambda p, i: rule_admin.set_rule_enabled(p, i, False),
                        _("The folder rule was turned off."))


# --------------------------------------------------------------------------- alert emails

@bp.route("/alert-emails", methods=["GET", "POST"])
def alert_emails():
    """Each person's own choice of which sync alerts are emailed to them."""
    p = current_principal()
    errors = {}
    if request.method == "POST":
        try:
            alert_mail.set_preference(p.user, request.form.get("alert_emails", ""))
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields)
        else:
            return _done(_("Your choice of alert emails was saved."), "sync_admin.alert_emails")
    return render_template("sync/alert_emails.html", user=p.user,
                           current=p.user.alert_emails, choices=alert_mail.ALERT_EMAIL_LABELS,
                           enabled=alert_mail.enabled(), errors=errors,
                           minutes=current_app.config.get("REGARDING_ALERT_EMAIL_MINUTES")), \
        422 if errors else 200


# --------------------------------------------------------------------------- blocklist

@bp.route("/blocklist", methods=["GET", "POST"])
def blocklist():
    p = current_principal()
    errors, value = {}, ""
    if request.method == "POST":
        value = request.form.get("pattern", "")[:320]
        try:
            block = block_admin.add_block(p, request.form.to_dict())
        except (Invalid, Conflict) as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"pattern": exc.message})
        else:
            return _done(_("Email from %(pattern)s is never tracked now.", pattern=block.pattern),
                         "sync_admin.blocklist")
    return render_template("sync/blocklist.html", blocks=block_admin.list_blocks(p), errors=errors,
                           value=value, can_edit=block_admin.can_edit_blocklist(p)), \
        422 if errors else 200


@bp.post("/blocklist/<int:block_id>/delete")
def block_delete(block_id: int):
    block = block_admin.delete_block(current_principal(), block_id)
    return _done(_("%(pattern)s was removed from the blocklist.", pattern=block.pattern), "sync_admin.blocklist")


def init_app(app) -> None:
    app.register_blueprint(bp)
