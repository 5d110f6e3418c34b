"""Administration pages under ``/admin``: users, teams, business units, security roles (the
privilege grid), field security and organization settings.

Views parse the form, call one service of ``server.security`` (users, teams, units, roles,
field_security) or ``crm.services.organization``, which checks the privileges, and render or
redirect. A page needs a signed-in user who may administer its table; others get 403. Forms
carry CSRF tokens; invalid input re-renders the form with the problems beside the fields.
"""
from __future__ import annotations

from functools import wraps

from flask import (Blueprint, current_app, flash, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user

from server.crm.registry import RECORD_TYPES
from server.crm.services import organization as org_settings
from server.db import db
from server.errors import Conflict, Invalid
from server.security import admin as admin_rules, authz, directory, field_security as field_admin
from server.security import roles as role_admin, teams as team_admin, units as unit_admin
from server.security import users as user_admin
from server.security.privileges import NAMED_PRIVILEGES, PRIVILEGES, TABLES, Depth
from server.web.auth import current_principal, login_manager
from server.web.languages import localize, localize_fields
from server.web.params import int_arg

bp = Blueprint("admin", __name__, url_prefix="/admin")

DEPTHS = list(Depth)
# "append_to" -> "Append to", "business_unit" -> "Business unit"
PRIVILEGE_LABELS = {name: name.replace("_", " ").capitalize() for name in PRIVILEGES}
TABLE_LABELS = {name: name.replace("_", " ").capitalize() for name in TABLES}
AREAS = (  # (endpoint, table, title, what it is for)
    ("admin.users", "user", _l("Users"),
     _l("Add people, reset passwords, deactivate leavers, give roles and teams.")),
    ("admin.teams", "team", _l("Teams"),
     _l("Groups of users that own records together and share the roles given to the team.")),
    ("admin.units", "business_unit", _l("Business units"),
     _l("The tree of divisions that privilege depth is measured against.")),
    ("admin.roles", "security_role", _l("Security roles"),
     _l("What each role may do on each table, and how far: user, unit, subtree or everyone.")),
    ("admin.field_security", "field_security_profile", _l("Field security"),
     _l("Hide chosen fields from everyone but the profiles allowed to read or change them.")),
    ("admin.organization", "organization", _l("Organization settings"),
     _l("Email tracking, address resolution and attachment limits for everyone.")),
)
# Areas of other blueprints: (endpoint, title, text, who sees it)
OTHER_AREAS = (
    ("addin_pages.admin_addin", _l("Outlook add-in"),
     _l("Download the add-in manifest and deploy it to your users."),
     lambda p: admin_rules.can_manage(p, "organization")),
    ("sync_admin.dashboard", _l("Server-side sync"),
     _l("Mailboxes, email server profiles, sync status and why an email was (not) tracked."),
     lambda p: admin_rules.can_manage(p, "email_server_profile") or p.has("view_sync_dashboard")),
)


# -- plumbing ---------------------------------------------------------------------------------

@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def area(table: str):
    """Require a principal who may administer ``table``; the view receives it as ``p``."""
    def wrap(view):
        @wraps(view)
        def inner(*args, **kwargs):
            p = current_principal()
            admin_rules.require_manage(p, table)
            return view(p, *args, **kwargs)
        return inner
    return wrap


def _commit(message: str, endpoint: str, **values):
    db.session.commit()
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _refused(exc, endpoint: str, **values):
    """A service said no (invalid input or a conflict) to a one-button action."""
    db.session.rollback()
    flash(localize(exc.message), "error")
    return redirect(url_for(endpoint, **values))


def _act(action, message: str, endpoint: str, **values):
    """A one-button action: the service call, then its message, or its refusal."""
    try:
        action()
    except (Conflict, Invalid) as exc:
        return _refused(exc, endpoint, **values)
    return _commit(message, endpoint, **values)


def _form() -> dict:
    return request.form.to_dict()


def _as_depth(value) -> Depth:
    try:
        return Depth(int(value))
    except (TypeError, ValueError):
        return Depth.NONE


@bp.app_template_filter("depth_label")
def _depth_label(value) -> str:
    return Depth(int(value)).label


# -- index ------------------------------------------------------------------------------------

@bp.get("/")
def index():
    p = current_principal()
    cards = [(endpoint, title, text) for endpoint, table, title, text in AREAS
             if admin_rules.can_manage(p, table)]
    cards += [(endpoint, title, text) for endpoint, title, text, allowed in OTHER_AREAS
              if allowed(p)]
    if not cards:
        return render_template("error.html", status=403,
                               message=_("You do not have the privileges to administer anything."),
                               fields={}), 403
    return render_template("admin/index.html", cards=cards)


# -- users ------------------------------------------------------------------------------------

@bp.get("/users")
@area("user")
def users(p):
    active = request.args.get("active", "active")
    args = {"q": request.args.get("q", "")[:200], "unit": int_arg("unit"), "role": int_arg("role"),
            "active": active if active in ("active", "inactive", "all") else "active"}
    page = user_admin.list_users(p, q=args["q"], unit_id=args["unit"], role_id=args["role"],
                          active=args["active"], page=int_arg("page", 1),
                          per_page=current_app.config["REGARDING_PAGE_SIZE"])
    return render_template("admin/users.html", page=page, args=args,
                           units=directory.units(p), roles=role_admin.all_roles(p),
                           can_create=p.depth("user", "create") > Depth.NONE,
                           can_write=lambda u: authz.can(p, "write", u))


def _user_form_context(p, values: dict, errors: dict):
    return {"values": values, "errors": errors,
            "units": unit_admin.active_units(p, "user", "create"), "people": directory.people(p),
            "roles": role_admin.all_roles(p), "grantable": lambda r: not admin_rules.exceeds(p, r)}


@bp.route("/users/new", methods=["GET", "POST"])
@area("user")
def user_new(p):
    if request.method == "GET":
        values = {"business_unit_id": p.business_unit_id, "password_mode": "generate"}
        return render_template("admin/user_new.html", **_user_form_context(p, values, {}))
    data = {**_form(), "role_ids": request.form.getlist("role_ids")}
    try:
        user, password = user_admin.create_user(p, data)
    except Invalid as exc:
        db.session.rollback()
        return render_template("admin/user_new.html", message=localize(exc.message),
                               **_user_form_context(p, data, localize_fields(exc.fields))), 400
    db.session.commit()
    if password is None:
        flash(_("%(name)s was added. They have no password yet.", name=user.full_name), "success")
        return redirect(url_for("admin.user_edit", user_id=user.id))
    return render_template("admin/password_shown.html", user=user, password=password,
                           created=True)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@area("user")
def user_edit(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    values, errors, message, status = None, {}, None, 200
    if request.method == "POST":
        values = _form()
        try:
            user_admin.update_user(p, user, values)
        except Invalid as exc:
            db.session.rollback()
            user = user_admin.get_user(p, user_id)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("The user is saved."), "admin.user_edit", user_id=user.id)
    if values is None:
        values = {"first_name": user.first_name, "last_name": user.last_name,
                  "email": user.email, "job_title": user.job_title or "",
                  "phone": user.phone or "", "business_unit_id": user.business_unit_id,
                  "manager": user.manager.email if user.manager else ""}
    teams = directory.teams(p)
    manage_profiles = admin_rules.can_manage(p, "field_security_profile")
    units = unit_admin.active_units(p, "user", "write")
    if user.business_unit not in units:
        units = [user.business_unit, *units]
    return render_template(
        "admin/user_edit.html", user=user, values=values, errors=errors, message=message,
        units=units, people=directory.people(p), roles=role_admin.all_roles(p),
        grantable=lambda r: not admin_rules.exceeds(p, r), teams=teams,
        profiles=field_admin.list_profiles(p) if manage_profiles else [],
        manage_profiles=manage_profiles, can_write=authz.can(p, "write", user),
        team_writable=lambda t: authz.can(p, "write", t), is_self=user.id == p.user_id), status


@bp.post("/users/<int:user_id>/active")
@area("user")
def user_set_active(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    active = request.form.get("active") == "1"
    try:
        user_admin.set_user_active(p, user, active)
    except (Conflict, Invalid) as exc:
        return _refused(exc, "admin.user_edit", user_id=user_id)
    return _commit(f"{user.full_name} is {'active' if active else 'deactivated'}.",
                   "admin.user_edit", user_id=user_id)


@bp.post("/users/<int:user_id>/password")
@area("user")
def user_password(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    try:
        password = user_admin.reset_password(p, user, _form())
    except (Conflict, Invalid) as exc:
        db.session.rollback()
        message = " ".join([localize(exc.message), *localize_fields(exc.fields).values()])
        flash(message, "error")
        return redirect(url_for("admin.user_edit", user_id=user_id) + "#password")
    db.session.commit()
    return render_template("admin/password_shown.html", user=user, password=password,
                           created=False)


@bp.post("/users/<int:user_id>/roles")
@area("user")
def user_roles(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    return _act(lambda: user_admin.set_user_roles(p, user, request.form.getlist("role_ids")),
                _("Roles saved."), "admin.user_edit", user_id=user_id)


@bp.post("/users/<int:user_id>/teams")
@area("user")
def user_teams(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    return _act(lambda: user_admin.set_user_teams(p, user, request.form.getlist("team_ids")),
                _("Team membership saved."), "admin.user_edit", user_id=user_id)


@bp.post("/users/<int:user_id>/field-profiles")
@area("user")
def user_field_profiles(p, user_id: int):
    user = user_admin.get_user(p, user_id)
    return _act(lambda: user_admin.set_user_field_profiles(p, user, request.form.getlist("profile_ids")),
                _("Field security profiles saved."), "admin.user_edit", user_id=user_id)


# -- teams ------------------------------------------------------------------------------------

@bp.get("/teams")
@area("team")
def teams(p):
    q = request.args.get("q", "")[:200]
    return render_template("admin/teams.html", rows=team_admin.list_teams(p, q), q=q,
                           can_create=p.depth("team", "create") > Depth.NONE)


@bp.route("/teams/new", methods=["GET", "POST"])
@area("team")
def team_new(p):
    values, errors, message, status = {"business_unit_id": p.business_unit_id}, {}, None, 200
    if request.method == "POST":
        values = _form()
        try:
            team = team_admin.create_team(p, values)
        except Invalid as exc:
            db.session.rollback()
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("Team %(name)s created.", name=team.name), "admin.team_edit", team_id=team.id)
    return render_template("admin/team_new.html", values=values, errors=errors, message=message,
                           units=unit_admin.active_units(p, "team", "create")), status


@bp.route("/teams/<int:team_id>", methods=["GET", "POST"])
@area("team")
def team_edit(p, team_id: int):
    team = team_admin.get_team(p, team_id)
    values, errors, message, status = None, {}, None, 200
    if request.method == "POST":
        values = _form()
        try:
            team_admin.update_team(p, team, values)
        except Invalid as exc:
            db.session.rollback()
            team = team_admin.get_team(p, team_id)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("The team is saved."), "admin.team_edit", team_id=team_id)
    if values is None:
        values = {"name": team.name, "description": team.description or "",
                  "business_unit_id": team.business_unit_id}
    units = unit_admin.active_units(p, "team", "write")
    if team.business_unit not in units:
        units = [team.business_unit, *units]
    members = sorted(team.members, key=lambda u: u.full_name.lower())
    return render_template("admin/team_edit.html", team=team, values=values, errors=errors,
                           message=message, units=units, members=members,
                           people=directory.people(p),
                           roles=role_admin.all_roles(p), grantable=lambda r: not admin_rules.exceeds(p, r),
                           can_write=authz.can(p, "write", team)), status


@bp.post("/teams/<int:team_id>/members")
@area("team")
def team_members(p, team_id: int):
    team = team_admin.get_team(p, team_id)
    try:
        if request.form.get("remove"):
            team_admin.remove_team_member(p, team, int_arg("remove", 0, source=request.form))
            message = _("Member removed.")
        else:
            user = team_admin.add_team_member(p, team, request.form.get("email", ""))
            message = _("%(name)s added.", name=user.full_name)
    except (Conflict, Invalid) as exc:
        return _refused(exc, "admin.team_edit", team_id=team_id)
    return _commit(message, "admin.team_edit", team_id=team_id)


@bp.post("/teams/<int:team_id>/roles")
@area("team")
def team_roles(p, team_id: int):
    team = team_admin.get_team(p, team_id)
    return _act(lambda: team_admin.set_team_roles(p, team, request.form.getlist("role_ids")),
                _("Roles saved."), "admin.team_edit", team_id=team_id)


# -- business units ---------------------------------------------------------------------------

@bp.route("/units", methods=["GET", "POST"])
@area("business_unit")
def units(p):
    values, errors, message, status = {}, {}, None, 200
    if request.method == "POST":
        values = _form()
        try:
            unit = unit_admin.create_unit(p, values.get("parent_id"), values.get("name"))
        except Invalid as exc:
            db.session.rollback()
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("Business unit %(name)s created.", name=unit.name), "admin.units")
    tree = unit_admin.unit_tree(p)
    parents = [node.unit for node, _ in unit_admin.flatten(tree) if node.unit.is_active]
    return render_template("admin/units.html", tree=tree, parents=parents, values=values,
                           errors=errors, message=message,
                           can_create=p.depth("business_unit", "create") > Depth.NONE), status


@bp.route("/units/<int:unit_id>", methods=["GET", "POST"])
@area("business_unit")
def unit_edit(p, unit_id: int):
    unit = unit_admin.get_unit(p, unit_id)
    errors, message, status = {}, None, 200
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "move":
                unit_admin.move_unit(p, unit, request.form.get("parent_id"))
                done = _("The business unit is moved.")
            else:
                unit_admin.rename_unit(p, unit, request.form.get("name"))
                done = _("The business unit is renamed.")
        except Invalid as exc:
            db.session.rollback()
            unit = unit_admin.get_unit(p, unit_id)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        except Conflict as exc:
            return _refused(exc, "admin.unit_edit", unit_id=unit_id)
        else:
            return _commit(done, "admin.unit_edit", unit_id=unit_id)
    rows = unit_admin.flatten(unit_admin.unit_tree(p))
    below = {unit.id}
    for node, _depth in rows:  # rows come parent first, so one pass finds the whole subtree
        if node.unit.parent_id in below:
            below.add(node.unit.id)
    parents = [n.unit for n, _ in rows if n.unit.is_active and n.unit.id not in below]
    users = directory.unit_members(p, unit)
    return render_template("admin/unit_edit.html", unit=unit, parents=parents, errors=errors,
                           message=message, users=users,
                           name_value=request.form.get("name", unit.name) if errors else unit.name,
                           can_write=authz.can(p, "write", unit)), status


@bp.post("/units/<int:unit_id>/active")
@area("business_unit")
def unit_set_active(p, unit_id: int):
    unit = unit_admin.get_unit(p, unit_id)
    active = request.form.get("active") == "1"
    return _act(lambda: unit_admin.set_unit_active(p, unit, active),
                f"{unit.name} is {'active' if active else 'deactivated'}.", "admin.unit_edit",
                unit_id=unit_id)


# -- security roles ---------------------------------------------------------------------------

@bp.route("/roles", methods=["GET", "POST"])
@area("security_role")
def roles(p):
    values, errors, message, status = {}, {}, None, 200
    if request.method == "POST":
        values = _form()
        try:
            role = role_admin.create_role(p, values)
        except Invalid as exc:
            db.session.rollback()
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("Role %(name)s created.", name=role.name), "admin.role_edit", role_id=role.id)
    if copy_from := int_arg("copy_from"):
        values.setdefault("copy_from", copy_from)
    return render_template("admin/roles.html", rows=role_admin.list_roles(p), values=values,
                           errors=errors, message=message,
                           can_create=p.depth("security_role", "create") > Depth.NONE), status


@bp.route("/roles/<int:role_id>", methods=["GET", "POST"])
@area("security_role")
def role_edit(p, role_id: int):
    role = role_admin.get_role(p, role_id)
    errors, message, status = {}, None, 200
    grid, named_set = role_admin.role_grid(role)
    if request.method == "POST":
        depths = {f"{t}.{priv}": request.form.get(f"d.{t}.{priv}", "0")
                  for t in TABLES for priv in PRIVILEGES}
        named = [n for n in NAMED_PRIVILEGES if request.form.get(f"n.{n}")]
        try:
            role_admin.update_role(p, role, _form(), depths, named)
        except Invalid as exc:
            db.session.rollback()
            role = role_admin.get_role(p, role_id)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
            grid = {k: _as_depth(v) for k, v in depths.items()}  # show what was sent
            named_set = set(named)
        else:
            return _commit(_("Role %(name)s saved.", name=role.name), "admin.role_edit", role_id=role_id)
    editable = role_admin.is_editable(role) and p.depth("security_role", "write") > Depth.NONE
    return render_template("admin/role_edit.html", role=role, grid=grid, named=named_set,
                           tables=TABLES, privileges=PRIVILEGES, depths=DEPTHS,
                           table_labels=TABLE_LABELS, privilege_labels=PRIVILEGE_LABELS,
                           named_privileges=NAMED_PRIVILEGES, editable=editable,
                           errors=errors, message=message,
                           can_delete=not role.is_builtin
                           and p.depth("security_role", "delete") > Depth.NONE), status


@bp.post("/roles/<int:role_id>/delete")
@area("security_role")
def role_delete(p, role_id: int):
    role = role_admin.get_role(p, role_id)
    name = role.name
    try:
        role_admin.delete_role(p, role)
    except (Conflict, Invalid) as exc:
        return _refused(exc, "admin.role_edit", role_id=role_id)
    return _commit(_("Role %(name)s deleted.", name=name), "admin.roles")


# -- field security ---------------------------------------------------------------------------

@bp.route("/field-security", methods=["GET", "POST"])
@area("field_security_profile")
def field_security(p):
    errors, message, status, values = {}, None, 200, {}
    if request.method == "POST":
        if request.form.get("action") == "secure":
            table = request.form.get("table", "")
            try:
                field_admin.set_secured_fields(p, table, request.form.getlist("fields"))
            except Invalid as exc:
                return _refused(exc, "admin.field_security")
            return _commit(_("Secured fields of %(records)s saved.", records=localize(RECORD_TYPES[table].nouns)),
                           "admin.field_security")
        values = _form()
        try:
            profile = field_admin.create_profile(p, values)
        except Invalid as exc:
            db.session.rollback()
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("Profile %(name)s created.", name=profile.name), "admin.profile_edit",
                           profile_id=profile.id)
    tables = [(rt, field_admin.securable_fields(rt.name)) for rt in RECORD_TYPES.values()]
    return render_template("admin/field_security.html", tables=tables,
                           secured=field_admin.secured_fields(p), profiles=field_admin.list_profiles(p),
                           values=values, errors=errors, message=message), status


@bp.route("/field-security/profiles/<int:profile_id>", methods=["GET", "POST"])
@area("field_security_profile")
def profile_edit(p, profile_id: int):
    profile = field_admin.get_profile(p, profile_id)
    secured = field_admin.secured_fields(p)
    errors, message, status, values = {}, None, 200, None
    if request.method == "POST":
        values = _form()
        permissions = {}
        for table, fields in secured.items():
            for name in fields:
                rights = {r for r in ("read", "update", "create")
                          if request.form.get(f"{r}.{table}.{name}")}
                permissions[(table, name)] = rights
        try:
            field_admin.update_profile(p, profile, values, permissions)
        except Invalid as exc:
            db.session.rollback()
            profile = field_admin.get_profile(p, profile_id)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("The profile is saved."), "admin.profile_edit", profile_id=profile_id)
    if values is None:
        values = {"name": profile.name, "description": profile.description or ""}
    perms = {(fp.table_name, fp.field): fp for fp in profile.permissions}
    rows = [(RECORD_TYPES[t], RECORD_TYPES[t].field(name), perms.get((t, name)))
            for t in RECORD_TYPES for name in sorted(secured.get(t, ()))]
    users, teams = field_admin.profile_members(profile)
    all_teams = directory.teams(p)
    return render_template("admin/profile_edit.html", profile=profile, values=values,
                           errors=errors, message=message, rows=rows, users=users, teams=teams,
                           all_teams=[t for t in all_teams if t not in teams],
                           people=directory.people(p)), status


@bp.post("/field-security/profiles/<int:profile_id>/members")
@area("field_security_profile")
def profile_members(p, profile_id: int):
    profile = field_admin.get_profile(p, profile_id)
    form = request.form
    try:
        if form.get("remove_user") or form.get("remove_team"):
            field_admin.remove_profile_member(p, profile, user_id=form.get("remove_user"),
                                      team_id=form.get("remove_team"))
            message = _("Member removed.")
        else:
            field_admin.add_profile_member(p, profile, email=form.get("email") or None,
                                   team_id=form.get("team_id") or None)
            message = _("Member added.")
    except (Conflict, Invalid) as exc:
        return _refused(exc, "admin.profile_edit", profile_id=profile_id)
    return _commit(message, "admin.profile_edit", profile_id=profile_id)


@bp.post("/field-security/profiles/<int:profile_id>/delete")
@area("field_security_profile")
def profile_delete(p, profile_id: int):
    profile = field_admin.get_profile(p, profile_id)
    name = profile.name
    field_admin.delete_profile(p, profile)
    return _commit(_("Profile %(name)s deleted.", name=name), "admin.field_security")


# -- organization -----------------------------------------------------------------------------

@bp.route("/organization", methods=["GET", "POST"])
@area("organization")
def organization(p):
    org = org_settings.get_organization(p)
    errors, message, status, values = {}, None, 200, None
    if request.method == "POST":
        values = _form()
        try:
            org_settings.update_organization(p, values)
        except Invalid as exc:
            db.session.rollback()
            org = org_settings.get_organization(p)
            errors, message, status = localize_fields(exc.fields), localize(exc.message), 400
        else:
            return _commit(_("Organization settings saved."), "admin.organization")
    if values is None:
        values = {s.name: org_settings.setting_value(org, s) for s in org_settings.ORG_SETTINGS}
    sections: dict[str, list] = {}
    for s in org_settings.ORG_SETTINGS:
        sections.setdefault(s.section, []).append(s)
    return render_template("admin/organization.html", org=org, sections=sections,
                           values=values, errors=errors, message=message,
                           can_write=p.depth("organization", "write") > Depth.NONE), status


def init_app(app) -> None:
    app.register_blueprint(bp)
