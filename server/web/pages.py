"""The server-rendered pages people use: home with global search, list/detail/forms for every
record type, sharing and assignment, each record's activity timeline, and activity pages
(email body in a sandboxed frame, attachments, regarding, complete/cancel, new activities).

Views parse input, call one service of ``server.crm.services`` and render; every query is scoped by
``authz.scope`` in SQL, and titles of linked records are loaded once per page.
"""
from __future__ import annotations

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext
from flask_login import current_user

from server.crm import html as html_document
from server.crm.activities import REGARDING_TYPES, Email
from server.crm.registry import RECORD_TYPES, RecordType
from server.crm.services import activity_actions as acts
from server.crm.services import details, lists, records, search, tracking
from server.crm.services.timeline import ROLL_UP
from server.db import db, statements_commit_alone
from server.errors import Invalid
from server.i18n import N_, message_of
from server.security import authz, directory
from server.security.models import Team, User
from server.security.privileges import Depth
from server.sync.items.fields import label as field_label
from server.web.attachments import download_response
from server.web.auth import current_principal, login_manager
from server.web.forms import form_fields, parse_due, submitted_values
from server.web.languages import localize, localize_fields
from server.web.params import as_id, int_arg

bp = Blueprint("pages", __name__)

ACTIVITY_TYPES = {"email": N_("Email"), "appointment": N_("Appointment"), "task": N_("Task"),
                  "phone_call": N_("Phone call")}
NEW_ACTIVITY_KINDS = {"task": N_("Task"), "phone_call": N_("Phone call"), "email": N_("Email draft")}
# Each kind's "New ..." as a whole phrase: a language agrees the adjective with the noun (and
# writes the noun as it writes it), which "New %(kind)s" with a lower-cased label cannot.
NEW_ACTIVITY_TITLES = {"task": N_("New task"), "phone_call": N_("New phone call"),
                       "email": N_("New email")}


# -- plumbing ---------------------------------------------------------------------------------

# The pages that only read: on PostgreSQL their statements (the session's user first) run
# without BEGIN and ROLLBACK (``statements_commit_alone``). A page added here writes nothing.
READS = frozenset({"pages.home", "pages.record_list", "pages.record_detail",
                   "pages.activity_detail", "pages.attachment_download"})


@bp.before_request
def _signed_in():
    if request.endpoint in READS:
        statements_commit_alone()
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.app_context_processor
def _layout():
    """Navigation for base.html: the record lists the user may read and, for
    administrators, the administration link."""
    if not current_user.is_authenticated:
        return {"nav_types": [], "admin_url": None}
    p = authz.principal(current_user._get_current_object())
    nav = [rt for rt in RECORD_TYPES.values() if p.depth(rt.name, "read") > Depth.NONE]
    admin_url = None
    if p.depth("user", "write") > Depth.NONE or p.depth("security_role", "write") > Depth.NONE:
        admin_url = url_for("admin.index")
    return {"nav_types": nav, "admin_url": admin_url, "activity_labels": ACTIVITY_TYPES,
            "record_title": lambda record: records.title(p, record) or gettext("(name hidden)")}


@bp.app_template_filter("humanize")
def humanize(value) -> str:
    """``in_progress`` → ``In progress``."""
    text = str(value or "").replace("_", " ")
    return text[:1].upper() + text[1:]


@bp.app_template_filter("filesize")
def filesize(size) -> str:
    """``2048`` → ``2.0 KB``."""
    size = float(size or 0)
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
    return ""  # pragma: no cover


def _record_type(type_name: str) -> RecordType:
    rt = RECORD_TYPES.get(type_name)
    if rt is None:
        abort(404)
    return rt


def _principal_choice(value: str | None, p):
    """``user:ID`` or ``team:ID`` from a form → the user or team (which the user may read)."""
    kind, _, ident = (value or "").partition(":")
    if kind not in ("user", "team") or as_id(ident) is None:
        choose = gettext("Choose a user or a team.")
        raise Invalid(choose, {"principal": choose})
    return authz.get(p, User if kind == "user" else Team, as_id(ident))


def _principals(p):
    return directory.people(p), directory.teams(p)


def _commit_and_go(message: str, target: str):
    db.session.commit()
    flash(message, "success")
    return redirect(target)


# -- home -------------------------------------------------------------------------------------

@bp.get("/")
def home():
    page = search.home(current_principal(), request.args.get("q") or "")
    return render_template("home.html", q=page.q, results=page.results,
                           my_activities=page.my_activities, recent=page.recent,
                           titles=page.titles)


# -- record lists -----------------------------------------------------------------------------

@bp.get("/r/<type_name>/")
def record_list(type_name: str):
    rt = _record_type(type_name)
    page = lists.record_list(
        current_principal(), rt, q=request.args.get("q") or "",
        state=request.args.get("state", "active"), sort=request.args.get("sort", ""),
        direction=request.args.get("dir", "asc"), page=int_arg("page", 1, maximum=100_000),
        size=current_app.config.get("REGARDING_PAGE_SIZE", 25))
    return render_template("records/list.html", rt=rt, rows=page.rows, columns=page.columns,
                           titles=page.titles, sort_choices=page.sort_choices, q=page.q,
                           state=page.state, sort=page.sort, direction=page.direction,
                           page=page.page, pages=page.pages, total=page.total,
                           can_create=page.can_create)


# -- one record -------------------------------------------------------------------------------

def _timeline_args():
    """Types shown, the page's cursor, and the roll-up asked for (``related=1``/``0``;
    anything else: the record type's default)."""
    types = tuple(t for t in request.args.getlist("type") if t in ACTIVITY_TYPES)
    related = {"1": True, "0": False}.get(request.args.get("related", ""))
    return types, request.args.get("cursor") or None, related


@bp.get("/r/<type_name>/<int:record_id>")
def record_detail(type_name: str, record_id: int):
    rt = _record_type(type_name)
    types, cursor, related = _timeline_args()
    page = details.record_page(current_principal(), rt, record_id, types=types, cursor=cursor,
                               limit=current_app.config.get("REGARDING_PAGE_SIZE", 25),
                               roll_up=related)
    return render_template("records/detail.html", rt=rt, record=page.record, fields=page.fields,
                           titles=page.titles, can=page.can,
                           can_add_activity=page.can_add_activity, timeline=page.timeline,
                           types=types, cursor=cursor, shares=page.shares,
                           related=page.related, new_kinds=NEW_ACTIVITY_TITLES,
                           rolls_up=rt.name in ROLL_UP, history=page.history,
                           field_label=field_label)


def _render_form(p, rt, record, fields, status=200, error=None):
    editable = [ff.field for ff in fields if ff.field.kind == "ref" and not ff.readonly]
    chosen: dict[str, set] = {}
    for ff in fields:
        if ff.field.kind == "ref" and as_id(ff.value):
            chosen.setdefault(ff.field.ref, set()).add(as_id(ff.value))
    links = lists.form_links(p, rt, editable, chosen, record)
    return render_template("records/form.html", rt=rt, record=record, fields=fields,
                           lookups=links.choices, titles=links.titles, error=error), status


@bp.route("/r/<type_name>/new", methods=["GET", "POST"])
def record_new(type_name: str):
    rt = _record_type(type_name)
    p = current_principal()
    authz.require_table(p, rt.name, "create")
    if request.method == "POST":
        data = submitted_values(p, rt, request.form)
        try:
            record = records.create(p, rt, data)
        except Invalid as exc:
            db.session.rollback()
            fields = form_fields(p, rt, None, request.form, exc.fields)
            return _render_form(p, rt, None, fields, 400, localize(exc.message))
        return _commit_and_go(gettext("%(kind)s created.", kind=localize(rt.label)),
                              url_for(".record_detail", type_name=rt.name, record_id=record.id))
    prefill = {k: v for k, v in request.args.items() if rt.field(k)}
    return _render_form(p, rt, None, form_fields(p, rt, None, prefill))


@bp.route("/r/<type_name>/<int:record_id>/edit", methods=["GET", "POST"])
def record_edit(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id, "write")
    if request.method == "POST":
        data = submitted_values(p, rt, request.form, record)
        try:
            records.update(p, record, data)
        except Invalid as exc:
            db.session.rollback()
            record = records.get(p, rt.name, record_id, "write")
            fields = form_fields(p, rt, record, request.form, exc.fields)
            return _render_form(p, rt, record, fields, 400, localize(exc.message))
        return _commit_and_go(gettext("%(kind)s saved.", kind=localize(rt.label)),
                              url_for(".record_detail", type_name=rt.name, record_id=record.id))
    return _render_form(p, rt, record, form_fields(p, rt, record))


@bp.post("/r/<type_name>/<int:record_id>/state")
def record_state(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id)
    active = request.form.get("active") == "1"
    records.set_active(p, record, active)
    return _commit_and_go(gettext("%(kind)s activated.", kind=localize(rt.label)) if active
                          else gettext("%(kind)s deactivated.", kind=localize(rt.label)),
                          url_for(".record_detail", type_name=rt.name, record_id=record.id))


@bp.route("/r/<type_name>/<int:record_id>/delete", methods=["GET", "POST"])
def record_delete(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id, "delete")
    if request.method == "POST":
        title = records.title(p, record) or localize(rt.label)
        records.delete(p, record)
        return _commit_and_go(gettext("%(kind)s “%(title)s” deleted.", kind=localize(rt.label), title=title),
                              url_for(".record_list", type_name=rt.name))
    return render_template("records/delete.html", rt=rt, record=record)


@bp.route("/r/<type_name>/<int:record_id>/assign", methods=["GET", "POST"])
def record_assign(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id, "assign")
    if request.method == "POST":
        owner = _principal_choice(request.form.get("owner"), p)
        records.assign(p, record, owner)
        name = getattr(owner, "full_name", None) or owner.name
        return _commit_and_go(gettext("%(kind)s assigned to %(name)s.", kind=localize(rt.label), name=name),
                              url_for(".record_detail", type_name=rt.name, record_id=record.id))
    users, teams = _principals(p)
    return render_template("records/assign.html", rt=rt, record=record, users=users, teams=teams)


@bp.route("/r/<type_name>/<int:record_id>/share", methods=["GET", "POST"])
def record_share(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id, "share")
    if request.method == "POST":
        who = _principal_choice(request.form.get("principal"), p)
        rights = set(request.form.getlist("rights"))
        if request.form.get("action") == "revoke":
            rights = set()
        elif not rights:
            raise Invalid(gettext("Choose at least one access right."),
                          {"rights": gettext("Choose at least one.")})
        records.share(p, record, who, rights)
        name = getattr(who, "full_name", None) or who.name
        message = (gettext("Access for %(name)s removed.", name=name) if not rights
                   else gettext("Shared with %(name)s.", name=name))
        return _commit_and_go(message, url_for(".record_share", type_name=rt.name,
                                               record_id=record.id))
    users, teams = _principals(p)
    return render_template("records/share.html", rt=rt, record=record, users=users, teams=teams,
                           shares=lists.shares(record), rights=records.SHARE_RIGHTS,
                           flags=authz.SHARE_FLAGS)


# -- activities -------------------------------------------------------------------------------

@bp.route("/r/<type_name>/<int:record_id>/activities/new/<kind>", methods=["GET", "POST"])
def activity_new(type_name: str, record_id: int, kind: str):
    rt = _record_type(type_name)
    if kind not in NEW_ACTIVITY_KINDS or rt.name not in REGARDING_TYPES:
        abort(404)
    if kind == "email":  # written on the compose page, the one way to write an email
        return redirect(url_for("compose.compose_new", regarding=f"{rt.name}:{record_id}"), 303)
    p = current_principal()
    record = records.get(p, rt.name, record_id)
    form = request.form if request.method == "POST" else {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            activity = _create_activity(p, kind, (rt.name, record.id), request.form)
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"subject": exc.message})
        else:
            return _commit_and_go(gettext("%(kind)s saved.", kind=localize(NEW_ACTIVITY_KINDS[kind])),
                                  url_for(".activity_detail", activity_id=activity.id))
    # Defaults from fields the user may read only (field security).
    defaults = {"phone_number": (records.field_value(p, record, "phone") if rt.field("phone")
                                 else None) or ""}
    return render_template("activities/new.html", rt=rt, record=record, kind=kind,
                           new_title=NEW_ACTIVITY_TITLES[kind], form=form, errors=errors,
                           defaults=defaults), 400 if errors else 200


def _create_activity(p, kind: str, regarding, form):
    try:
        due = parse_due(form.get("due"))
    except ValueError as exc:
        raise Invalid(gettext("Some fields are not valid."), {"due": localize(message_of(exc))}) from None
    if kind == "task":
        return acts.create_task(p, regarding, subject=form.get("subject", ""),
                                description=form.get("description"),
                                priority=form.get("priority", "normal"), due=due,
                                category=form.get("category"))
    return acts.create_phone_call(p, regarding, subject=form.get("subject", ""),
                                  phone_number=form.get("phone_number"),
                                  direction=form.get("direction", "outgoing"),
                                  description=form.get("description"),
                                  priority=form.get("priority", "normal"), due=due)


def _activity_csp(remote_images: bool) -> str:
    """The activity page's policy, inherited by the email body's srcdoc frame: no script,
    no remote content (remote images only when asked for, for this one view)."""
    images = "'self' data:" + (" https: http:" if remote_images else "")
    return (f"default-src 'self'; img-src {images}; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; font-src 'self'; connect-src 'self'; media-src 'none'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@bp.get("/activities/<int:activity_id>")
def activity_detail(activity_id: int):
    remote_images = request.args.get("images") == "remote"
    view = request.args.get("view")
    page = details.activity_page(current_principal(), activity_id, with_images=view != "text",
                                 rq=request.args.get("rq") or "")
    activity = page.activity
    is_email = isinstance(activity, Email)
    document, has_remote = None, False
    if is_email and activity.html_body and view != "text":
        document, has_remote = html_document.email_document(
            activity.html_body, page.inline_images, remote_images=remote_images)
    response = current_app.make_response(render_template(
        "activities/detail.html", activity=activity, is_email=is_email, document=document,
        remote_images=remote_images, view=view, roles=page.roles, titles=page.titles,
        can_write=page.can_write, rq=(request.args.get("rq") or "").strip()[:200],
        candidates=page.candidates, regarding_types=REGARDING_TYPES,
        has_remote=has_remote, history=page.history, field_label=field_label))
    response.headers["Content-Security-Policy"] = _activity_csp(remote_images)
    return response


@bp.post("/activities/<int:activity_id>/regarding")
def activity_regarding(activity_id: int):
    p = current_principal()
    activity = acts.get_activity(p, activity_id)
    kind = request.form.get("kind") or None
    record_id = int_arg("record_id", source=request.form)
    if kind is not None and record_id is None:
        raise Invalid(gettext("Choose a record."))
    tracking.set_regarding(p, activity, (kind, record_id) if kind else None)
    return _commit_and_go(gettext("Regarding cleared.") if kind is None else gettext("Regarding set."),
                          url_for(".activity_detail", activity_id=activity.id))


@bp.post("/activities/<int:activity_id>/state")
def activity_state(activity_id: int):
    p = current_principal()
    activity = acts.get_activity(p, activity_id)
    state = request.form.get("state", "")
    acts.set_state(p, activity, state)
    marked = gettext("Marked completed.") if state == "completed" else gettext("Marked canceled.")
    return _commit_and_go(marked, url_for(".activity_detail", activity_id=activity.id))


@bp.get("/activities/<int:activity_id>/attachments/<int:attachment_id>")
def attachment_download(activity_id: int, attachment_id: int):
    att, data = details.attachment(current_principal(), activity_id, attachment_id)
    return download_response(att, data)



def init_app(app) -> None:
    app.register_blueprint(bp)
