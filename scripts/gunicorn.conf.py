"""gunicorn's logging for scripts/start.sh: the console keeps what a person needs (the
server's start, errors, warnings from the app such as failed sign-ins), and everything,
with each client's refused TLS handshake (a browser that does not trust the self-signed
certificate says so on every connection: hundreds of "certificate unknown" lines in one
session), goes to ``server.log`` in the instance folder."""
import logging
import os

_INSTANCE = os.environ.get("REGARDING_INSTANCE_DIR") or "instance"
os.makedirs(_INSTANCE, exist_ok=True)


class _ForPeople(logging.Filter):
    """Leaves out one client's bad request or refused handshake: not the server's trouble."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Invalid request from ip=")


logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"for_people": {"()": _ForPeople}},
    "formatters": {"plain": {"format": "%(asctime)s [%(levelname)s] %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                    "level": "WARNING", "filters": ["for_people"], "formatter": "plain"},
        "file": {"class": "logging.handlers.WatchedFileHandler", "formatter": "plain",
                 "filename": os.path.join(_INSTANCE, "server.log")},
    },
    "root": {"level": "INFO", "handlers": ["console", "file"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console", "file"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
}
