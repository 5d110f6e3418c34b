"""The WSGI entry point: ``gunicorn server.wsgi:app``."""
from werkzeug.middleware.proxy_fix import ProxyFix

from server import create_app

app = create_app()
if app.config.get("REGARDING_BEHIND_PROXY"):
    # Trust one proxy's X-Forwarded-For/Proto/Host (see README: reverse proxy).
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
