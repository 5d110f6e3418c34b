"""The endpoint Microsoft Graph posts change and lifecycle notifications to
(``POST /graph/notifications``): the validation handshake (the ``validationToken`` echoed
as text/plain, at once) and notifications handed to ``server.sync.workers.graph_push``. No session
or CSRF token: Graph is the caller, and each notification is checked by its subscription's
``clientState``."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from server.errors import Invalid
from server.sync.workers import graph_push
from server.web.params import decode_json

bp = Blueprint("graph_webhook", __name__)
MAX_BODY = 1_000_000
MAX_TOKEN = 4096


@bp.post(graph_push.PATH)
def notifications():
    token = request.args.get("validationToken")
    if token is not None:
        if len(token) > MAX_TOKEN:
            return Response("validation token too long", 400, mimetype="text/plain")
        return Response(token, 200, mimetype="text/plain")
    if (request.content_length or 0) > MAX_BODY:
        return Response("too large", 413, mimetype="text/plain")
    try:
        payload = decode_json(request.get_data(cache=False))
    except Invalid:
        payload = None
    if payload is None or not isinstance(payload.get("value"), list):
        return Response("not a notification", 400, mimetype="text/plain")
    graph_push.handle_notifications(payload)
    return Response("", 202)


def init_app(app: Flask) -> None:
    from server.web import csrf
    csrf.exempt(bp)
    app.register_blueprint(bp)
