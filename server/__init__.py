"""Regarding: a CRM that keeps every customer email, meeting and task in one place.

``create_app`` is the only place an application is built (``flask --app server ...``,
``gunicorn server.wsgi:app``, the tests).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    instance = (config or {}).get("REGARDING_INSTANCE_DIR") or os.environ.get("REGARDING_INSTANCE_DIR")
    app = Flask(__name__, instance_relative_config=True, static_folder="../static",
                static_url_path="/static", template_folder="web/templates",
                instance_path=os.path.abspath(instance) if instance else None)
    from server import config as config_module
    config_module.load(app, config)
    logging.basicConfig(level=app.config["REGARDING_LOG_LEVEL"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from server import db as db_module
    db_module.init_app(app)
    _import_models()

    from server.security import secrets as secret_box
    secret_box.init_app(app)

    from server import web
    web.init_app(app)
    _register_blueprints(app)

    from server import cli
    cli.init_app(app)
    return app


def _register_blueprints(app: Flask) -> None:
    """Every area's pages and APIs, each module registering its blueprint (sign-in first:
    the others' views rely on its login manager)."""
    from server.web import (addin_api, addin_mailbox, addin_pages, admin, api, auth, compose,
                            email_templates, graph_webhook, mail_files, pages, queues,
                            sync_admin, sync_items, sync_provision)
    for area in (auth, pages, admin, api, addin_api, addin_pages, sync_admin, sync_provision,
                 sync_items, graph_webhook, addin_mailbox, mail_files, compose, email_templates,
                 queues):
        area.init_app(app)


def _import_models() -> None:
    """Import every module that defines tables, so metadata (and Alembic) sees them all."""
    import server.crm.activities  # noqa: F401
    import server.crm.addresses  # noqa: F401
    import server.crm.history  # noqa: F401
    import server.crm.models  # noqa: F401
    import server.crm.queues  # noqa: F401
    import server.crm.services.tracked  # noqa: F401
    import server.crm.templates  # noqa: F401
    import server.security.models  # noqa: F401
    import server.security.stamp  # noqa: F401  (its triggers, made with the tables)
    import server.sync.models  # noqa: F401
    import server.sync.admin.provision  # noqa: F401  (its hook: mailboxes for new owners)
    import server.sync.acts.wake  # noqa: F401  (its hook: a CRM change wakes its mailboxes)
    import server.sync.workers.graph_models  # noqa: F401
