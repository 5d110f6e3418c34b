"""The server-rendered pages people use: home with global search, list/detail/forms for every
record type, sharing and assignment, each record's activity timeline, and activity pages
(email body in a sandboxed frame, attachments, regarding, complete/cancel, new activities).

Views parse input, call one service from ``server.crm`` and render; every query is scoped by
``authz.scope`` in SQL, and titles of linked records are loaded once per page.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import quote

import nh3
from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_login import current_user
from sqlalchemy import false, func, literal, or_, select, union_all
from sqlalchemy.orm import selectinload, undefer

from server.crm.services import activity_actions as acts
from server.crm.services import records
from server.crm.services import timeline as timelines
from server.crm.services import tracking
from server.crm.activities import (REGARDING_TYPES, Activity, Attachment, Email)
from server.crm.registry import RECORD_TYPES, RecordType
from server.db import db
from server.errors import Invalid, NotFound
from server.security import authz
from server.security.models import RecordShare, Team, User
from server.security.privileges import Depth
from server.web.auth import current_principal, login_manager
from server.web.forms import form_fields, parse_due, submitted_values

bp = Blueprint("pages", __name__)

ACTIVITY_TYPES = {"email": "Email", "appointment": "Appointment", "task": "Task",
                  "phone_call": "Phone call"}
NEW_ACTIVITY_KINDS = {"task": "Task", "phone_call": "Phone call", "email": "Email draft"}
SEARCH_LIMIT = 8
LOOKUP_LIMIT = 300
INLINE_IMAGE_MAX = 1024 * 1024


# -- plumbing ---------------------------------------------------------------------------------

@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.app_context_processor
def _layout():
    """Navigation for base.html: the record lists the user may read and, for
    administrators, the administration link (when that blueprint is installed)."""
    if not current_user.is_authenticated:
        return {"nav_types": [], "admin_url": None}
    p = authz.principal(current_user._get_current_object())
    nav = [rt for rt in RECORD_TYPES.values() if p.depth(rt.name, "read") > Depth.NONE]
    admin_url = None
    if "admin.index" in current_app.view_functions and (
            p.depth("user", "write") > Depth.NONE or p.depth("security_role", "write") > Depth.NONE):
        admin_url = url_for("admin.index")
    return {"nav_types": nav, "admin_url": admin_url, "activity_labels": ACTIVITY_TYPES,
            "record_title": lambda record: records.title(p, record) or "(name hidden)"}


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


def _title_column(p, rt: RecordType):
    """The title as the user may see it (field security: ``records.title_column``)."""
    return records.title_column(p, rt.name)


def ref_titles(p, wanted: dict[str, set]) -> dict[tuple[str, int], str]:
    """Titles of linked records the user may read: one query per record type, however many
    rows a page shows. Unreadable ones are absent (shown as restricted)."""
    out: dict[tuple[str, int], str] = {}
    for kind, ids in wanted.items():
        ids = {i for i in ids if i is not None}
        if not ids or kind not in RECORD_TYPES:
            continue
        rt = RECORD_TYPES[kind]
        rows = db.session.execute(select(rt.model.id, _title_column(p, rt)).where(
            rt.model.id.in_(ids), authz.scope(p, rt.model, "read")))
        out.update({(kind, i): t for i, t in rows})
    return out


def _refs_of(rows, fields) -> dict[str, set]:
    wanted: dict[str, set] = {}
    for f in fields:
        if f.kind == "ref":
            wanted.setdefault(f.ref, set()).update(getattr(r, f.name) for r in rows)
    return wanted


def _search_condition(p, rt: RecordType, q: str):
    """Match ``q`` in the record type's search fields the user may read (a hidden field, or a
    name made from one, is never searched, so search cannot reveal it)."""
    cols = records.search_columns(p, rt)
    if rt.title_field not in rt.search_fields and rt.title_field in records.readable_names(p, rt):
        cols.append(getattr(rt.model, rt.title_field))
    return or_(*[c.icontains(q, autoescape=True) for c in cols]) if cols else false()


def _principal_choice(value: str | None, p):
    """``user:ID`` or ``team:ID`` from a form → the user or team (which the user may read)."""
    kind, _, ident = (value or "").partition(":")
    if kind not in ("user", "team") or not ident.isdigit():
        raise Invalid("Choose a user or a team.", {"principal": "Choose a user or a team."})
    return authz.get(p, User if kind == "user" else Team, int(ident))


def _principals(p):
    users = db.session.scalars(select(User).where(User.is_active.is_(True),
                                                  authz.scope(p, User, "read"))
                               .order_by(User.full_name).limit(500)).all()
    teams = db.session.scalars(select(Team).where(authz.scope(p, Team, "read"))
                               .order_by(Team.name).limit(200)).all()
    return users, teams


def _commit_and_go(message: str, target: str):
    db.session.commit()
    flash(message, "success")
    return redirect(target)


# -- home -------------------------------------------------------------------------------------

@bp.get("/")
def home():
    p = current_principal()
    q = (request.args.get("q") or "").strip()[:200]
    readable = [rt for rt in RECORD_TYPES.values() if p.depth(rt.name, "read") > Depth.NONE]
    results = []
    if q:
        for rt in readable:
            rows = db.session.scalars(
                select(rt.model).where(authz.scope(p, rt.model, "read"),
                                       _search_condition(p, rt, q))
                .order_by(rt.model.is_active.desc(), _title_column(p, rt), rt.model.id)
                .limit(SEARCH_LIMIT + 1)).all()
            if rows:
                shown = [(r, _search_details(p, rt, r)) for r in rows[:SEARCH_LIMIT]]
                results.append((rt, shown, len(rows) > SEARCH_LIMIT))
    my_activities = db.session.scalars(
        select(acts.AnyActivity)
        .where(acts.AnyActivity.owner_user_id == p.user_id, acts.AnyActivity.state == "open",
               or_(acts.AnyActivity.activity_type != "email",  # of emails: my drafts
                   acts.AnyActivity.id.in_(select(Email.id).where(Email.status == "draft"))))
        .order_by(func.coalesce(acts.AnyActivity.scheduled_end, acts.AnyActivity.occurred_on).asc(),
                  acts.AnyActivity.id)
        .limit(10)).all()
    recent = _recent_records(p, readable)
    titles = ref_titles(p, _regarding_refs(my_activities))
    return render_template("home.html", q=q, results=results, my_activities=my_activities,
                           recent=recent, titles=titles)


def _search_details(p, rt: RecordType, record) -> list[str]:
    """What tells search hits apart (number, first email, phone), fields the user may read."""
    access = p.fields(rt.name)
    names = [rt.number_field, *rt.email_fields[:1], "phone"]
    return [str(getattr(record, n)) for n in names
            if n and rt.field(n) and access.can_read(n) and getattr(record, n, None)]


def _recent_records(p, readable, limit: int = 10):
    """Records the user changed last, all types in one query."""
    parts = [select(literal(rt.name).label("kind"), rt.model.id.label("id"),
                    _title_column(p, rt).label("title"), rt.model.modified_on.label("at"))
             .where(rt.model.modified_by_id == p.user_id, authz.scope(p, rt.model, "read"))
             for rt in readable]
    if not parts:
        return []
    u = union_all(*parts).subquery()
    return db.session.execute(select(u).order_by(u.c.at.desc()).limit(limit)).all()


def _regarding_refs(activities) -> dict[str, set]:
    wanted: dict[str, set] = {}
    for a in activities:
        ref = a.regarding_ref
        if ref:
            wanted.setdefault(ref[0], set()).add(ref[1])
    return wanted


# -- record lists -----------------------------------------------------------------------------

@bp.get("/r/<type_name>/")
def record_list(type_name: str):
    rt = _record_type(type_name)
    p = current_principal()
    authz.require_table(p, rt.name, "read")
    model = rt.model
    visible = records.visible_fields(p, rt)
    columns = [f for f in visible if f.list and f.name != rt.title_field]
    q = (request.args.get("q") or "").strip()[:200]
    state = request.args.get("state", "active")
    state = state if state in ("active", "inactive", "all") else "active"
    sortable = {rt.title_field, "modified_on", *(f.name for f in columns if f.kind != "ref")}
    sort = request.args.get("sort", rt.title_field)
    sort = sort if sort in sortable else rt.title_field
    direction = "desc" if request.args.get("dir") == "desc" else "asc"
    page_size = current_app.config.get("REGARDING_PAGE_SIZE", 25)
    page = max(1, request.args.get("page", type=int) or 1)

    conditions = [authz.scope(p, model, "read")]
    if state != "all":
        conditions.append(model.is_active.is_(state == "active"))
    if q:
        conditions.append(_search_condition(p, rt, q))
    total = db.session.scalar(select(func.count()).select_from(model).where(*conditions))
    # Sorting by a hidden field would reveal its order: the title sorts as the user sees it.
    sort_col = _title_column(p, rt) if sort == rt.title_field else getattr(model, sort)
    order = sort_col.desc() if direction == "desc" else sort_col.asc()
    rows = db.session.scalars(
        select(model).where(*conditions).options(selectinload(model.owner_team))
        .order_by(order, model.id.desc() if direction == "desc" else model.id)
        .offset((page - 1) * page_size).limit(page_size)).all()
    titles = ref_titles(p, _refs_of(rows, columns))
    pages = max(1, -(-total // page_size))
    sort_choices = [(rt.title_field, "Name")] + [(f.name, f.label) for f in columns
                                                 if f.name in sortable] + [("modified_on", "Modified")]
    return render_template("records/list.html", rt=rt, rows=rows, columns=columns, titles=titles,
                           sort_choices=sort_choices,
                           q=q, state=state, sort=sort, direction=direction, page=page,
                           pages=pages, total=total,
                           can_create=p.depth(rt.name, "create") > Depth.NONE)


# -- one record -------------------------------------------------------------------------------

def _timeline_args():
    types = tuple(t for t in request.args.getlist("type") if t in ACTIVITY_TYPES)
    return types, request.args.get("cursor") or None


@bp.get("/r/<type_name>/<int:record_id>")
def record_detail(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id)
    visible = records.visible_fields(p, rt)
    types, cursor = _timeline_args()
    page = timelines.timeline(p, rt.name, record.id, cursor=cursor, types=types or None,
                              limit=current_app.config.get("REGARDING_PAGE_SIZE", 25))
    wanted = _refs_of([record], visible)
    for kind, ids in _regarding_refs(page.items).items():
        wanted.setdefault(kind, set()).update(ids)
    titles = ref_titles(p, wanted)
    can = {priv: authz.can(p, priv, record)
           for priv in ("write", "delete", "assign", "share", "append_to")}
    can_add_activity = (rt.name in REGARDING_TYPES and can["append_to"]
                        and authz.can_create(p, Activity, p.business_unit_id, p.user_id))
    shares = _shares(rt, record) if can["share"] else []
    related = _related(p, rt, record)
    return render_template("records/detail.html", rt=rt, record=record, fields=visible,
                           titles=titles, can=can, can_add_activity=can_add_activity,
                           timeline=page, types=types, cursor=cursor, shares=shares,
                           related=related, new_kinds=NEW_ACTIVITY_KINDS)


def _related(p, rt: RecordType, record):
    """Short lists of records that point at this one (an account's contacts, opportunities
    and cases; a contact's opportunities and cases), read-scoped, one query each."""
    links = {"account": (("contact", "parent_account_id"), ("opportunity", "customer_account_id"),
                         ("case", "customer_account_id")),
             "contact": (("opportunity", "customer_contact_id"), ("case", "customer_contact_id"))}
    out = []
    for kind, column in links.get(rt.name, ()):
        other = RECORD_TYPES[kind]
        if p.depth(kind, "read") == Depth.NONE or not p.fields(kind).can_read(column):
            continue
        rows = db.session.execute(
            select(other.model.id, _title_column(p, other))
            .where(getattr(other.model, column) == record.id, other.model.is_active.is_(True),
                   authz.scope(p, other.model, "read"))
            .order_by(_title_column(p, other)).limit(11)).all()
        out.append((other, column, rows[:10], len(rows) > 10,
                    p.depth(kind, "create") > Depth.NONE and p.fields(kind).can_create(column)))
    return out


def _shares(rt: RecordType, record):
    return db.session.scalars(
        select(RecordShare).where(RecordShare.table_name == rt.name,
                                  RecordShare.record_id == record.id)
        .options(selectinload(RecordShare.user), selectinload(RecordShare.team))
        .order_by(RecordShare.id)).all()


def _lookups(p, rt: RecordType, fields, record=None):
    """Choices for each editable link field: active records the user may read and link to
    (never the record itself, so an account cannot become its own parent)."""
    out = {}
    for ff in fields:
        if ff.field.kind != "ref" or ff.readonly:
            continue
        other = RECORD_TYPES[ff.field.ref]
        conditions = [other.model.is_active.is_(True), authz.scope(p, other.model, "read"),
                      authz.scope(p, other.model, "append_to")]
        if record is not None and other is rt:
            conditions.append(other.model.id != record.id)
        rows = db.session.execute(
            select(other.model.id, _title_column(p, other)).where(*conditions)
            .order_by(_title_column(p, other)).limit(LOOKUP_LIMIT + 1)).all()
        out[ff.name] = (rows[:LOOKUP_LIMIT], len(rows) > LOOKUP_LIMIT)
    return out


def _form_titles(p, rt, fields):
    wanted: dict[str, set] = {}
    for ff in fields:
        if ff.field.kind == "ref" and ff.value.isdigit():
            wanted.setdefault(ff.field.ref, set()).add(int(ff.value))
    return ref_titles(p, wanted)


def _render_form(p, rt, record, fields, status=200, error=None):
    return render_template("records/form.html", rt=rt, record=record, fields=fields,
                           lookups=_lookups(p, rt, fields, record), titles=_form_titles(p, rt, fields),
                           error=error), status


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
            return _render_form(p, rt, None, fields, 400, exc.message)
        return _commit_and_go(f"{rt.label} created.",
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
            return _render_form(p, rt, record, fields, 400, exc.message)
        return _commit_and_go(f"{rt.label} saved.",
                              url_for(".record_detail", type_name=rt.name, record_id=record.id))
    return _render_form(p, rt, record, form_fields(p, rt, record))


@bp.post("/r/<type_name>/<int:record_id>/state")
def record_state(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id)
    active = request.form.get("active") == "1"
    records.set_active(p, record, active)
    return _commit_and_go(f"{rt.label} {'activated' if active else 'deactivated'}.",
                          url_for(".record_detail", type_name=rt.name, record_id=record.id))


@bp.route("/r/<type_name>/<int:record_id>/delete", methods=["GET", "POST"])
def record_delete(type_name: str, record_id: int):
    rt = _record_type(type_name)
    p = current_principal()
    record = records.get(p, rt.name, record_id, "delete")
    if request.method == "POST":
        title = records.title(p, record) or rt.label
        records.delete(p, record)
        return _commit_and_go(f"{rt.label} “{title}” deleted.",
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
        return _commit_and_go(f"{rt.label} assigned to {name}.",
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
            raise Invalid("Choose at least one access right.", {"rights": "Choose at least one."})
        records.share(p, record, who, rights)
        name = getattr(who, "full_name", None) or who.name
        message = f"Access for {name} removed." if not rights else f"Shared with {name}."
        return _commit_and_go(message, url_for(".record_share", type_name=rt.name,
                                               record_id=record.id))
    users, teams = _principals(p)
    return render_template("records/share.html", rt=rt, record=record, users=users, teams=teams,
                           shares=_shares(rt, record), rights=records.SHARE_RIGHTS,
                           flags=authz.SHARE_FLAGS)


# -- activities -------------------------------------------------------------------------------

@bp.route("/r/<type_name>/<int:record_id>/activities/new/<kind>", methods=["GET", "POST"])
def activity_new(type_name: str, record_id: int, kind: str):
    rt = _record_type(type_name)
    if kind not in NEW_ACTIVITY_KINDS or rt.name not in REGARDING_TYPES:
        abort(404)
    p = current_principal()
    record = records.get(p, rt.name, record_id)
    form = request.form if request.method == "POST" else {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            activity = _create_activity(p, kind, (rt.name, record.id), request.form)
        except Invalid as exc:
            db.session.rollback()
            errors = exc.fields or {"subject": exc.message}
        else:
            return _commit_and_go(f"{NEW_ACTIVITY_KINDS[kind]} saved.",
                                  url_for(".activity_detail", activity_id=activity.id))
    # Defaults from fields the user may read only (field security).
    defaults = {"to": ", ".join(records.emails(p, record)[:1]),
                "phone_number": records.field_value(p, record, "phone") if rt.field("phone") else ""}
    defaults["phone_number"] = defaults["phone_number"] or ""
    return render_template("activities/new.html", rt=rt, record=record, kind=kind,
                           kind_label=NEW_ACTIVITY_KINDS[kind], form=form, errors=errors,
                           defaults=defaults), 400 if errors else 200


def _create_activity(p, kind: str, regarding, form):
    try:
        due = parse_due(form.get("due"))
    except ValueError as exc:
        raise Invalid("Some fields are not valid.", {"due": str(exc)}) from None
    if kind == "task":
        return acts.create_task(p, regarding, subject=form.get("subject", ""),
                                description=form.get("description"),
                                priority=form.get("priority", "normal"), due=due,
                                category=form.get("category"))
    if kind == "phone_call":
        return acts.create_phone_call(p, regarding, subject=form.get("subject", ""),
                                      phone_number=form.get("phone_number"),
                                      direction=form.get("direction", "outgoing"),
                                      description=form.get("description"),
                                      priority=form.get("priority", "normal"), due=due)
    return acts.create_email_draft(p, regarding, to=form.get("to", ""), cc=form.get("cc", ""),
                                   subject=form.get("subject", ""), body=form.get("body"))


def _activity_csp(remote_images: bool) -> str:
    """The activity page's policy, inherited by the email body's srcdoc frame: no script,
    no remote content (remote images only when asked for, for this one view)."""
    images = "'self' data:" + (" https: http:" if remote_images else "")
    return (f"default-src 'self'; img-src {images}; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; font-src 'self'; connect-src 'self'; media-src 'none'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


_BODY_ATTRIBUTES = {
    "*": {"style", "align", "valign", "width", "height", "bgcolor", "color", "dir", "lang",
          "title", "border", "cellpadding", "cellspacing", "colspan", "rowspan", "face", "size"},
    "a": {"href", "name"},
    "img": {"src", "alt"},
}
_CID = re.compile(r"""src=(["'])cid:([^"']+)\1""", re.I)


def email_document(email: Email, attachments, remote_images: bool) -> str:
    """The email's HTML body as a complete document for the sandboxed frame. It was
    sanitized when stored; it is cleaned again here (defense in depth), inline images
    (``cid:``) become data: URLs and links open outside the frame."""
    html = nh3.clean(email.html_body or "", tags=nh3.ALLOWED_TAGS | {"font", "center"},
                     attributes=_BODY_ATTRIBUTES, url_schemes={"http", "https", "mailto", "cid"},
                     link_rel="noopener noreferrer")
    inline = {}
    for att in attachments:
        if att.content_id and att.content_type.startswith("image/") and not att.content_omitted \
                and att.size <= INLINE_IMAGE_MAX:
            data = attachment_bytes(att)
            if data is not None:
                inline[att.content_id.strip("<>")] = (
                    f"data:{att.content_type};base64,{base64.b64encode(data).decode()}")
    if inline:
        html = _CID.sub(lambda m: f'src="{inline.get(m.group(2).strip("<>"), "")}"', html)
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\">"
            "<style>body{font-family:'Segoe UI',system-ui,-apple-system,sans-serif;font-size:14px;"
            "line-height:1.45;color:#242424;margin:16px;overflow-wrap:anywhere}"
            "img{max-width:100%;height:auto}table{max-width:100%}</style></head><body>"
            f"{html}</body></html>")


def attachment_bytes(att: Attachment) -> bytes | None:
    """An attachment's content from the database or the instance folder (never outside it)."""
    if att.content is not None:
        return att.content
    if not att.storage_path:
        return None
    base = Path(current_app.instance_path).resolve()
    for candidate in (base / att.storage_path, base / "attachments" / att.storage_path):
        path = candidate.resolve()
        if path.is_relative_to(base) and path.is_file():
            return path.read_bytes()
    return None


@bp.get("/activities/<int:activity_id>")
def activity_detail(activity_id: int):
    p = current_principal()
    activity = acts.get_activity(p, activity_id)
    remote_images = request.args.get("images") == "remote"
    view = request.args.get("view")
    is_email = isinstance(activity, Email)
    document = None
    if is_email and activity.html_body and view != "text":
        with_content = db.session.scalars(
            select(Attachment).where(Attachment.activity_id == activity.id,
                                     Attachment.content_id.is_not(None))
            .options(undefer(Attachment.content))).all()
        document = email_document(activity, with_content, remote_images)
    roles: dict[str, list] = {}
    for party in activity.parties:
        roles.setdefault(party.role, []).append(party)
    titles = ref_titles(p, _regarding_refs([activity]))
    can_write = authz.can(p, "write", activity)
    q = (request.args.get("rq") or "").strip()[:200]
    candidates = _regarding_candidates(p, q) if q and can_write else []
    response = current_app.make_response(render_template(
        "activities/detail.html", activity=activity, is_email=is_email, document=document,
        remote_images=remote_images, view=view, roles=roles, titles=titles,
        can_write=can_write, rq=q, candidates=candidates, regarding_types=REGARDING_TYPES,
        has_remote=bool(document and re.search(r"src=[\"']https?:", document, re.I))))
    response.headers["Content-Security-Policy"] = _activity_csp(remote_images)
    return response


def _regarding_candidates(p, q: str):
    out = []
    for kind in REGARDING_TYPES:
        rt = RECORD_TYPES[kind]
        if p.depth(kind, "read") == Depth.NONE:
            continue
        rows = db.session.execute(
            select(rt.model.id, _title_column(p, rt))
            .where(authz.scope(p, rt.model, "read"), authz.scope(p, rt.model, "append_to"),
                   rt.model.is_active.is_(True), _search_condition(p, rt, q))
            .order_by(_title_column(p, rt)).limit(5)).all()
        if rows:
            out.append((rt, rows))
    return out


@bp.post("/activities/<int:activity_id>/regarding")
def activity_regarding(activity_id: int):
    p = current_principal()
    activity = acts.get_activity(p, activity_id)
    kind = request.form.get("kind") or None
    record_id = request.form.get("record_id", type=int)
    if kind is not None and record_id is None:
        raise Invalid("Choose a record.")
    tracking.set_regarding(p, activity, (kind, record_id) if kind else None)
    return _commit_and_go("Regarding cleared." if kind is None else "Regarding set.",
                          url_for(".activity_detail", activity_id=activity.id))


@bp.post("/activities/<int:activity_id>/state")
def activity_state(activity_id: int):
    p = current_principal()
    activity = acts.get_activity(p, activity_id)
    state = request.form.get("state", "")
    acts.set_state(p, activity, state)
    return _commit_and_go(f"Marked {state}.", url_for(".activity_detail", activity_id=activity.id))


@bp.get("/activities/<int:activity_id>/attachments/<int:attachment_id>")
def attachment_download(activity_id: int, attachment_id: int):
    p = current_principal()
    activity = db.session.get(Activity, activity_id)
    if activity is None:
        raise NotFound()
    authz.require(p, "read", activity)
    att = db.session.scalar(select(Attachment).where(
        Attachment.id == attachment_id, Attachment.activity_id == activity.id)
        .options(undefer(Attachment.content)))
    if att is None:
        raise NotFound()
    if att.content_omitted:
        raise NotFound("This attachment was over the size limit; only its name was kept.")
    data = attachment_bytes(att)
    if data is None:
        raise NotFound("The attachment's content is not available.")
    ctype = att.content_type if re.fullmatch(r"[\w.+-]+/[\w.+-]+", att.content_type or "") \
        else "application/octet-stream"
    response = current_app.response_class(data, mimetype=ctype)
    response.headers["Content-Disposition"] = _disposition(att.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the UTF-8 name (RFC 6266)."""
    name = (filename or "attachment").replace("\r", "").replace("\n", "")
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name)[:150] or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def init_app(app) -> None:
    app.register_blueprint(bp)
