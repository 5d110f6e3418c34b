"""scripts/start.sh for real: it installs, migrates, seeds the demo, makes a certificate,
serves HTTPS with gunicorn, and a demo user signs in; a second start finds it all in place."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3

from server.demo import DEMO_SIGNINS
from tests.servers.ports import free_port, port_accepts

ROOT = Path(__file__).resolve().parent.parent
# The first start may run pip (one line per package, without network when everything is installed).
READY_SECONDS = 600


class Started:
    """The script running in its own process group, its output collected as it comes."""

    def __init__(self, env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["bash", "scripts/start.sh"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_ready(self, url: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < READY_SECONDS:
            if self.proc.poll() is not None:
                pytest.fail(f"start.sh ended ({self.proc.returncode}):\n{self.output[-6000:]}")
            try:
                if requests.get(url, verify=False, timeout=5).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.5)
        pytest.fail(f"no answer from {url} in {READY_SECONDS} s:\n{self.output[-6000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


@pytest.fixture
def start_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REGARDING_") and k not in ("FLASK_APP", "PORT")}
    env.update(REGARDING_INSTANCE_DIR=str(tmp_path / "instance"), PORT=str(free_port()),
               REGARDING_WEB_WORKERS="1", REGARDING_LOG_LEVEL="WARNING")
    return env


def _outside_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _sign_in(base: str, email: str, password: str) -> requests.Session:
    session = requests.Session()
    # verify=False on each call: a session-wide setting loses to REQUESTS_CA_BUNDLE.
    form = session.get(f"{base}/signin", timeout=10, verify=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    # Flask-WTF checks the Referer of HTTPS form posts, as a browser sends it.
    response = session.post(f"{base}/signin", timeout=10, allow_redirects=False, verify=False,
                            headers={"Referer": f"{base}/signin"},
                            data={"csrf_token": token, "email": email, "password": password,
                                  "next": ""})
    assert response.status_code == 302, response.text[:2000]
    return session


@pytest.mark.slow
def test_start_script_serves_the_demo_over_https(start_env):
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    port = start_env["PORT"]
    base = f"https://127.0.0.1:{port}"
    instance = Path(start_env["REGARDING_INSTANCE_DIR"])

    first = Started(start_env)
    try:
        first.wait_until_ready(f"{base}/signin")
        email, password, _ = DEMO_SIGNINS[2]  # a Salesperson
        session = _sign_in(base, email, password)
        home = session.get(f"{base}/", timeout=10, verify=False)
        assert home.status_code == 200
        assert "Sam Patel" in home.text  # signed in as the demo salesperson
        assert home.url.startswith("https://")
        # Without the form's token the same post is refused.
        refused = requests.post(f"{base}/signin", verify=False, timeout=10,
                                data={"email": email, "password": password})
        assert refused.status_code == 400
        # Plain HTTP is not served on the HTTPS port.
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/signin", timeout=5)
        # The demo's passwords are public: other machines cannot reach it by default.
        outside = _outside_address()
        if outside:
            assert not port_accepts(outside, int(port)), f"the demo listens on {outside}"
        # Browsers that do not trust the self-signed certificate refuse every handshake:
        # each refusal goes to the server's log file, not to the person's console.
        for _ in range(3):
            with pytest.raises(requests.exceptions.SSLError):
                requests.get(f"{base}/signin", timeout=5)  # verifying: refused by the client
        # The database and its WAL files are for this account only.
        for name in ("regarding.db", "regarding.db-wal", "regarding.db-shm"):
            if (instance / name).exists():
                assert (instance / name).stat().st_mode & 0o077 == 0, name
    finally:
        first.stop()
    out = first.output
    assert "Contoso Ltd loaded" in out
    if "installing requirements" in out:  # a first start shows each package as it comes
        assert re.search(r"^\[start\.sh\]\s+1\. \S", out, re.M), out[-3000:]
        assert "requirements installed" in out
    assert "Invalid request from ip=" not in out and "SSL" not in out
    assert "Invalid request from ip=" in (instance / "server.log").read_text()
    assert f"{instance}/server.log" in out  # the banner says where the full log is
    assert f"https://localhost:{port}/addin/preview" in out and "/admin/addin" in out
    assert f"Listening on 127.0.0.1:{port} only" in out
    for email, password, role in DEMO_SIGNINS:
        assert email in out and password in out
    assert (instance / "tls-cert.pem").exists() and (instance / "regarding.db").exists()
    assert not port_accepts("127.0.0.1", int(port)), "the server outlived the script"

    # A second start keeps what is there: no install, no reseed, the same certificate.
    cert = (instance / "tls-cert.pem").read_bytes()
    second = Started(start_env)
    try:
        second.wait_until_ready(f"{base}/signin")
        _sign_in(base, DEMO_SIGNINS[0][0], DEMO_SIGNINS[0][1])
    finally:
        second.stop()
    assert "already loaded" in second.output
    assert "installing requirements" not in second.output
    assert (instance / "tls-cert.pem").read_bytes() == cert


@pytest.mark.slow
def test_the_script_stopped_alone_leaves_nothing_running(start_env):
    """A TERM to the script alone (``kill <pid>``, or a process manager that signals the main
    process) stops the web server and the sync worker too: nothing of its process group is
    left (a sync worker left behind holds SQLite's worker lock, so the next start's worker
    is refused)."""
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    started = Started(start_env)
    try:
        started.wait_until_ready(f"https://127.0.0.1:{start_env['PORT']}/signin")
        os.kill(started.proc.pid, signal.SIGTERM)
        started.proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(started.proc.pid, 0)  # is any process of its group left?
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            left = subprocess.run(["ps", "-o", "pid,args", "-g", str(started.proc.pid)],
                                  capture_output=True, text=True).stdout
            pytest.fail(f"left running after the script ended:\n{left}")
    finally:
        started.stop()
        try:
            os.killpg(started.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
