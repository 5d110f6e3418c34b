"""Pages for email templates and signatures: the organization's templates (changed by whoever
may write the organization's settings) and each user's own, a user's signature, and a
queue's signature (for whoever may write the queue). Services: ``server.crm.templates``.
Every form posts with a CSRF token."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from server.crm.services import email_templates as svc
from server.crm.models import Queue
from server.db import db
from server.errors import Invalid
from server.security import authz
from server.security.privileges import Depth
from server.web.auth import current_principal, login_manager
from server.web.languages import localize_fields

bp = Blueprint("email_templates", __name__, url_prefix="/email")


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _may_manage_org(p) -> bool:
    return p.depth("organization", "write") > Depth.NONE


@bp.get("/templates")
def template_list():
    p = current_principal()
    return render_template("compose/templates.html", templates=svc.usable_templates(p),
                           may_manage_org=_may_manage_org(p))


@bp.route("/templates/new", methods=["GET", "POST"])
@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
def template_edit(template_id: int | None = None):
    p = current_principal()
    template = svc.own_template(p, template_id, writing=request.method == "POST") \
        if template_id is not None else None
    organization = request.values.get("scope") == "organization"
    form = request.form if request.method == "POST" else {
        "name": template.name if template else "", "subject": template.subject if template else "",
        "body_html": template.body_html if template else ""}
    errors = {}
    if request.method == "POST":
        try:
            saved = svc.save_template(p, template, name=form.get("name", ""),
                                      subject=form.get("subject", ""),
                                      body_html=form.get("body_html", ""),
                                      organization=organization)
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"name": exc.message})
        else:
            db.session.commit()
            flash(_("Template saved."), "success")
            return redirect(url_for(".template_edit", template_id=saved.id))
    writable = template is None or template.user_id == p.user_id or _may_manage_org(p)
    return render_template("compose/template_edit.html", template=template, form=form,
                           errors=errors, organization=organization, writable=writable,
                           may_manage_org=_may_manage_org(p)), 400 if errors else 200


@bp.post("/templates/<int:template_id>/delete")
def template_delete(template_id: int):
    p = current_principal()
    db.session.delete(svc.own_template(p, template_id, writing=True))
    db.session.commit()
    flash(_("Template deleted."), "success")
    return redirect(url_for(".template_list"))


@bp.route("/signature", methods=["GET", "POST"])
@bp.route("/signature/queue/<int:queue_id>", methods=["GET", "POST"])
def signature(queue_id: int | None = None):
    p = current_principal()
    queue = authz.get(p, Queue, queue_id, "write") if queue_id is not None else None
    if request.method == "POST":
        svc.save_signature(user_id=p.user_id, queue_id=queue_id,
                           body_html=request.form.get("body_html", ""))
        db.session.commit()
        flash(_("Signature saved."), "success")
        return redirect(request.path)
    body = svc.signature_of(user_id=p.user_id, queue_id=queue_id)
    return render_template("compose/signature.html", queue=queue, body=body)


def init_app(app) -> None:
    app.register_blueprint(bp)
