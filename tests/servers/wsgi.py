"""A WSGI application (the app under test, or a small peer such as an image server) served
on a free loopback port in a thread, for browser tests: ``with serving(app) as url: ...``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from werkzeug.serving import make_server


@contextmanager
def serving(wsgi_app) -> Iterator[str]:
    """Serve ``wsgi_app`` on 127.0.0.1 (threaded) and yield its base URL; stopped after."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
