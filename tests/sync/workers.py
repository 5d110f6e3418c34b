"""Test helper: real sync worker processes (``flask --app server sync worker``) started with
their own environment against the test's database, their log lines collected, killed or
stopped like an operator (or the kernel) would."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import ENCRYPTION_KEY
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


def worker_env(database_url: str, instance: Path, **settings) -> dict[str, str]:
    env = {**os.environ, "REGARDING_DATABASE_URL": database_url,
           "REGARDING_INSTANCE_DIR": str(instance), "REGARDING_ENCRYPTION_KEY": ENCRYPTION_KEY,
           "REGARDING_SECRET_KEY": "test-secret-key-for-workers", "REGARDING_LOG_LEVEL": "INFO",
           # the test's Maildir stores are beside the instance, in the test's folder
           "REGARDING_MAILDIR_ROOT": str(instance.parent), "PYTHONUNBUFFERED": "1"}
    env.update({key: str(value) for key, value in settings.items()})
    return env


class WorkerProcess:
    """``flask --app server sync worker --id NAME`` in a child process."""

    def __init__(self, name: str, env: dict[str, str], *args: str):
        self.name = name
        self.lines: list[str] = []
        self._started = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "server", "sync", "worker", "--id", name,
             *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if f"sync worker {self.name} started" in line:
                self._started.set()

    def wait_started(self, timeout: float = 60) -> None:
        if not self._started.wait(timeout):
            self.kill()
            raise AssertionError(f"worker {self.name} did not start:\n" + self.output())

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when the machine or the OOM killer stops it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._reader.join(5)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the graceful exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return "\n".join(self.lines[-60:])


def wait_until(condition, timeout: float, what: str, every: float = 0.25, workers=()) -> None:
    """``tests.waiting.until``, failing with the workers' last output."""
    until(condition, what, timeout=timeout, every=every, detail=lambda: "\n\n".join(
        f"--- {w.name}\n{w.output()}" for w in workers))
