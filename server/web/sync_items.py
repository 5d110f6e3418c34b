"""Pages for appointment, contact and task sync settings: the field sync directions (the
organization's) and the synchronization filters (the organization's defaults and the
signed-in user's own). Views parse the form, call ``sync.admin.item_settings`` and render."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from server.db import db
from server.errors import Invalid
from server.sync.acts.filters import OPERATORS, fields_for
from server.sync.admin import item_settings
from server.sync.connectors.base import ITEM_KINDS
from server.sync.items.fields import FIELD_DIRECTIONS
from server.sync.models import FILTER_OWNERS
from server.web import sync_admin
from server.web.auth import current_principal, login_manager
from server.web.languages import localize_fields

bp = Blueprint("sync_items", __name__, url_prefix="/admin/sync/items")
bp.context_processor(sync_admin.common)  # the sync pages' menu


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.route("", methods=["GET", "POST"])
def settings():
    p = current_principal()
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form.to_dict()
        try:
            if form.get("what") == "directions":
                changed = item_settings.save_directions(p, form)
                message = _("Field sync directions saved (%(changed)s differ from the defaults).",
                            changed=changed)
            else:
                item_settings.save_filter(p, form)
                message = _("Synchronization filter saved.")
        except Invalid as exc:
            db.session.rollback()
            errors = localize_fields(exc.fields or {"form": exc.message})
        else:
            db.session.commit()
            flash(message, "success")
            return redirect(url_for("sync_items.settings"))
    return render_template(
        "sync/items.html", directions=item_settings.directions(),
        rows=item_settings.filter_rows(p), in_force=item_settings.in_force(p),
        can_edit=item_settings.can_edit(p), errors=errors, way_choices=FIELD_DIRECTIONS,
        owners=FILTER_OWNERS, operators=OPERATORS,
        fields={k: fields_for(k) for k in ITEM_KINDS}), 422 if errors else 200


def init_app(app) -> None:
    app.register_blueprint(bp)
