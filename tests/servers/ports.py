"""Loopback networking helpers for the test peers.

Free 127.0.0.1 ports, waiting until a peer's port accepts connections (with a clear error
that quotes the peer's log when it does not), self-signed TLS certificates for the peers'
STARTTLS / implicit-TLS variants, and tying a peer's process to the test process's life.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
PORT_IN_USE = "Address already in use"  # as peers log a lost race for a free_port()

_handed_out: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    The kernel picks it; ports already handed out by this process are never returned
    twice, so several peers started in one session cannot collide with each other.
    """
    with _lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free loopback port")


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_log(path: Path | None, limit: int = 8000) -> str:
    """The tail of a peer's log file, or a note that there is none."""
    if path is None:
        return "(no log file)"
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return text[-limit:] if text else f"(log {path} is empty)"


def tied_to_this_process(command: list[str]) -> list[str]:
    """Wrap a peer's command so the kernel stops the peer (SIGTERM) if we die.

    A crashed or killed pytest must not leave Dovecot or Radicale listening behind it.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *command] if setpriv else command


class PeerStartError(RuntimeError):
    """A test peer did not come up; the message carries its log."""


def wait_for_ports(
    name: str,
    ports: list[int],
    *,
    host: str = LOOPBACK,
    timeout: float = 10.0,
    proc: subprocess.Popen | None = None,
    logs: list[Path] | None = None,
    banner: bytes | None = None,
    fatal: str | None = None,
    log_offsets: dict[Path, int] | None = None,
) -> None:
    """Block until every port accepts connections (and sends `banner`, if given).

    Raises PeerStartError, quoting the peer's logs, if `proc` exits, a log shows the
    `fatal` marker (after `log_offsets`, the log sizes before this start), or time runs out.
    """
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc is not None and proc.poll() is not None:
            raise PeerStartError(_failure(name, f"exited with code {proc.returncode}", logs))
        if fatal and any(fatal in _log_since(log, log_offsets) for log in logs or []):
            raise PeerStartError(_failure(name, f"its log reports {fatal.strip()!r}", logs))
        if _ready(host, pending[0], banner):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise PeerStartError(
                _failure(name, f"port {host}:{pending[0]} not ready after {timeout}s", logs)
            )
        time.sleep(0.02)


def log_sizes(logs: list[Path]) -> dict[Path, int]:
    """Current sizes of log files (0 if missing), to read only what follows."""
    return {Path(log): Path(log).stat().st_size if Path(log).exists() else 0 for log in logs}


def _log_since(log: Path, offsets: dict[Path, int] | None) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek((offsets or {}).get(Path(log), 0))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _ready(host: str, port: int, banner: bytes | None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            if banner is None:
                return True
            sock.settimeout(2.0)
            return sock.recv(200).startswith(banner)
    except OSError:
        return False


def _failure(name: str, what: str, logs: list[Path] | None) -> str:
    parts = [f"{name} failed to start: {what}"]
    for log in logs or []:
        parts.append(f"--- {log} ---\n{read_log(log)}")
    return "\n".join(parts)


@dataclass(frozen=True)
class SelfSignedCert:
    """A PEM certificate and key for 127.0.0.1/localhost, written to disk."""

    cert_path: Path
    key_path: Path

    def server_context(self):
        """An ssl.SSLContext for a server presenting this certificate."""
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self):
        """An ssl.SSLContext for a client that trusts exactly this certificate."""
        import ssl

        return ssl.create_default_context(cafile=str(self.cert_path))


def make_self_signed_cert(directory: Path, name: str = "peer",
                          hosts: tuple[str, ...] = ()) -> SelfSignedCert:
    """Generate a self-signed EC certificate for localhost, 127.0.0.1 and `hosts` (more DNS
    names) in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
                + [x509.DNSName(host) for host in hosts]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return SelfSignedCert(cert_path, key_path)
