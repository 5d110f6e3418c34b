r"""A real Dovecot (IMAP + POP3) for the tests, configured from scratch in a temp dir.

Nothing under /etc/dovecot is read: `DovecotServer` writes its own dovecot.conf, runs
`dovecot -F -c <conf>` as a child process (base_dir, state_dir and log in the temp dir)
and listens on free 127.0.0.1 ports. Users live in passwd-files with plain passwords, so a
test can add one at run time (`server.add_user("alice@example.com", "secret")`); mail is
Maildir under a per-user home in the temp dir. The hierarchy separator is "/" (folders like
"INBOX/Contoso deal"; '.' is allowed in names); every user has Drafts, Sent, Trash and Junk
with their SPECIAL-USE flags, and "Archive" gets \Archive if someone creates it.

With ``sieve=True`` it also runs ManageSieve (RFC 5804, Debian's dovecot-managesieved) on
``sieve_port`` and the Sieve plugin (dovecot-sieve) for local delivery: ``deliver_lda``
hands a message to dovecot-lda as the MTA would, the user's active script runs, and a
``redirect`` goes out through a small sendmail stand-in that delivers it to the other
user of this same Dovecot (every address the tests use lives here).

What this Dovecot (2.3 on Debian 12) offers after login, verified by tests/test_peers.py:
CONDSTORE, QRESYNC, IDLE, MOVE, UIDPLUS, ESEARCH, SPECIAL-USE, LIST-STATUS, NOTIFY, METADATA
(mail attributes in a per-user file dict) and Dovecot's X-GUID (a stable mailbox id in
STATUS / LIST-STATUS and a message GUID in FETCH). It does not offer RFC 8474 OBJECTID
(no MAILBOXID / EMAILID / THREADID). HIGHESTMODSEQ comes with SELECT only after
`ENABLE CONDSTORE` (or a CONDSTORE-using command).

Mail processes cannot run as root (Dovecot refuses), so when the tests run as root the
mail uid/gid are $SUDO_UID/$SUDO_GID if set, else nobody/nogroup; otherwise the invoking
user's own uid/gid.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .ports import (
    LOOPBACK,
    PORT_IN_USE,
    PeerStartError,
    SelfSignedCert,
    free_port,
    log_sizes,
    make_self_signed_cert,
    tied_to_this_process,
    wait_for_ports,
)

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"

# Folders every user has (created on first access), with their RFC 6154 special use.
SPECIAL_FOLDERS = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk"}

_instances = itertools.count(1)


@dataclass(frozen=True)
class MailUser:
    """A Dovecot account: login name, plain password and home directory."""

    username: str
    password: str
    home: Path

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"


def _mail_ids() -> tuple[int, int]:
    """uid/gid that mail processes run as (never root: Dovecot refuses mail access as root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    sudo_uid, sudo_gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if sudo_uid and sudo_gid and sudo_uid != "0":
        return int(sudo_uid), int(sudo_gid)
    try:
        nobody = pwd.getpwnam("nobody")
        return nobody.pw_uid, nobody.pw_gid
    except KeyError:
        return 65534, 65534


def _check_field(value: str, what: str) -> None:
    if not value or any(ch in value for ch in ":\r\n\0"):
        raise ValueError(f"{what} must be non-empty without ':' or line breaks: {value!r}")


# What most IMAP servers offer (``imap_capability=PLAIN_IMAP``): IDLE, but no CONDSTORE,
# QRESYNC, LIST-STATUS or NOTIFY.
PLAIN_IMAP = ("IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS UNSELECT CHILDREN "
              "MOVE SPECIAL-USE")


class DovecotServer:
    """One private Dovecot instance. Use as a context manager or call start()/close()."""

    host = LOOPBACK

    def __init__(self, root: Path | None = None, *, tls: bool = False, separator: str = "/",
                 special_use: bool = True, idle_notify_seconds: int | None = None,
                 sieve: bool = False, imap_capability: str | None = None):
        self._own_root = root is None
        # A short path under /tmp: unix sockets live in base_dir (108-byte limit) and the
        # unprivileged login/auth/mail processes must be able to traverse to it.
        self.root = Path(root or tempfile.mkdtemp(prefix="regarding-dovecot-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.tls = tls
        self.separator = separator
        # False: the folders are made but marked with no RFC 6154 special use, as on
        # servers that set none (clients then find Sent by its name).
        self.special_use = special_use
        # Dovecot's IDLE keepalive ("* OK Still here", every 2 minutes by default): a few
        # seconds lets a test see several in a short wait.
        self.idle_notify_seconds = idle_notify_seconds
        self.sieve = sieve
        # What IMAP says it can do after login, instead of Dovecot's whole list (its
        # ``imap_capability``): a server with fewer extensions, e.g. no CONDSTORE or NOTIFY,
        # as most servers are.
        self.imap_capability = imap_capability
        self.name = f"regarding-{os.getpid()}-{next(_instances)}"
        self.base_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.homes = self.root / "home"
        self.conf_path = self.root / "dovecot.conf"
        self.users_dir = self.root / "users"
        self.log_path = self.root / "dovecot.log"
        self.stderr_path = self.root / "dovecot.stderr"
        self.mail_uid, self.mail_gid = _mail_ids()
        self._pick_ports()
        self._started = False
        self.cert: SelfSignedCert | None = (
            make_self_signed_cert(self.root / "tls", "dovecot") if tls else None
        )
        self.users: dict[str, MailUser] = {}
        self._proc: subprocess.Popen | None = None
        for path in (self.state_dir, self.homes, self.users_dir):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        self.conf_path.write_text(self._config())

    # ----------------------------------------------------------------- configuration

    def _config(self) -> str:
        me = pwd.getpwuid(os.geteuid()).pw_name
        my_group = grp.getgrgid(os.getegid()).gr_name
        unprivileged = "" if os.geteuid() == 0 else (
            # Without root nothing can switch users: run every service as ourselves.
            f"default_internal_user = {me}\n"
            f"default_internal_group = {my_group}\n"
            f"default_login_user = {me}\n"
            "service imap-urlauth-login {\n  chroot =\n}\n"
        )
        if self.tls:
            assert self.cert is not None
            ssl = (
                "ssl = yes\n"
                f"ssl_cert = <{self.cert.cert_path}\n"
                f"ssl_key = <{self.cert.key_path}\n"
            )
        else:
            ssl = "ssl = no\n"
        imaps = self._tls_listener("imaps", self.imaps_port)
        pop3s = self._tls_listener("pop3s", self.pop3s_port)
        # chroot needs root; without it the login and anvil processes must stay unjailed.
        chroot = "" if os.geteuid() == 0 else "chroot ="
        folders = "\n".join(
            f"  mailbox {name} {{\n    special_use = {use if self.special_use else ''}\n"
            f"    auto = subscribe\n  }}"
            for name, use in SPECIAL_FOLDERS.items()
        )
        archive_use = "\\Archive" if self.special_use else ""
        imap_settings = (f"\n  imap_idle_notify_interval = {self.idle_notify_seconds} secs"
                       if self.idle_notify_seconds else "")
        if self.imap_capability:
            imap_settings += f"\n  imap_capability = {self.imap_capability}"
        return f"""# Generated by tests/servers/dovecot.py for one test session. Not for production.
protocols = imap pop3{" sieve" if self.sieve else ""}
listen = {self.host}
instance_name = {self.name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
auth_verbose = yes
{unprivileged}
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}

mail_location = maildir:~/Maildir
# The list index is also what gives IMAP NOTIFY (RFC 5465) in Dovecot 2.3.
mailbox_list_index = yes
mail_fsync = never
# listescape: folder names may contain '.', as on Exchange or Gmail (Maildir++ uses '.').
mail_plugins = $mail_plugins listescape
# Mail attributes in a per-user file: IMAP METADATA (RFC 5464).
mail_attribute_dict = file:%h/dovecot-attributes
imap_metadata = yes

namespace inbox {{
  inbox = yes
  prefix =
  separator = {self.separator}
{folders}
  mailbox Archive {{
    special_use = {archive_use}
  }}
}}

# One passwd-file per user: a new user's file is read at its first login, at once.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_dir}/%u
}}

service imap-login {{
  {chroot}
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  {imaps}
}}
service pop3-login {{
  {chroot}
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  {pop3s}
}}
service anvil {{
  {chroot}
  # Mode 0 turns off the auth penalty: tests log in wrongly on purpose, fast.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200{imap_settings}
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
}}
{self._sieve_config(chroot)}"""

    def _sieve_config(self, chroot: str) -> str:
        if not self.sieve:
            return ""
        sendmail = self.root / "sendmail"
        # Pigeonhole runs "sendmail -i -f SENDER -- RECIPIENT" for a redirect, as the mail
        # user: drop the message into the recipient's Maildir (new/), as the MTA of a
        # one-server site would; Dovecot picks it up like any delivered mail.
        sendmail.write_text(
            "#!/bin/sh\n"
            "while [ $# -gt 0 ]; do\n"
            "  case \"$1\" in --) shift; break;; -f) shift 2;; -*) shift;; *) break;; esac\n"
            "done\n"
            f'box="{self.homes}/$1/Maildir"\n'
            '[ -d "${box%/Maildir}" ] || exit 67\n'
            'mkdir -p "$box/tmp" "$box/new" "$box/cur" || exit 75\n'
            'name="$(date +%s).$$.sendmail"\n'
            'cat > "$box/tmp/$name" && mv "$box/tmp/$name" "$box/new/$name" || exit 75\n')
        sendmail.chmod(0o755)
        return f"""
service managesieve-login {{
  {chroot}
  inet_listener sieve {{
    address = {self.host}
    port = {self.sieve_port}
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
sendmail_path = {sendmail}
postmaster_address = postmaster@example.com
lda_mailbox_autocreate = yes
protocol lda {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""

    def _pick_ports(self) -> None:
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.sieve_port: int | None = free_port() if self.sieve else None
        self.imaps_port: int | None = free_port() if self.tls else None
        self.pop3s_port: int | None = free_port() if self.tls else None

    def _tls_listener(self, name: str, port: int | None) -> str:
        if port is None:
            return f"inet_listener {name} {{\n    port = 0\n  }}"
        return (f"inet_listener {name} {{\n    address = {self.host}\n    port = {port}\n"
                "    ssl = yes\n  }")

    def _write_user(self, user: MailUser) -> None:
        path = self.users_dir / user.username
        tmp = self.users_dir / f".{user.username}.tmp"
        tmp.write_text(
            f"{user.username}:{{PLAIN}}{user.password}:{self.mail_uid}:{self.mail_gid}"
            f"::{user.home}::\n"
        )
        tmp.chmod(0o644)
        # Dovecot notices a changed file by its mtime (whole seconds) or size: move the
        # mtime on even when the same user is rewritten twice within one second.
        try:
            stamp = max(int(time.time()), int(path.stat().st_mtime) + 1)
        except FileNotFoundError:
            stamp = int(time.time())
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)

    @staticmethod
    def _wait_for_next_second() -> None:
        # Dovecot's passwd-file looks at an already-read file at most once per second:
        # after changing one, the next login must fall in a later second to see it.
        time.sleep(1.0 - time.time() % 1.0 + 0.01)

    # ---------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> DovecotServer:
        """Start Dovecot and wait until every listener greets."""
        if self.running:
            return self
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot is not installed: run `bash scripts/test.sh` once")
        for attempt in range(1, 4):
            try:
                self._launch(timeout)
                self._started = True
                return self
            except PeerStartError as exc:
                # Something took a port between free_port() and Dovecot's bind: take new
                # ones, but only before the first start (later, tests rely on the ports).
                if self._started or attempt == 3 or PORT_IN_USE not in str(exc):
                    raise
                self._pick_ports()
                self.conf_path.write_text(self._config())
        return self

    def _launch(self, timeout: float) -> None:
        logs = [self.stderr_path, self.log_path]
        offsets = log_sizes(logs)
        stderr = open(self.stderr_path, "ab")
        try:
            self._proc = subprocess.Popen(
                tied_to_this_process([DOVECOT, "-F", "-c", str(self.conf_path)]),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its own process group, so kill() takes the children
            )
        finally:
            stderr.close()
        ports = [(self.imap_port, b"* OK"), (self.pop3_port, b"+OK")]
        if self.sieve_port:
            ports.append((self.sieve_port, b"\"IMPLEMENTATION\""))
        try:
            for port, banner in ports:
                wait_for_ports(
                    "dovecot", [port], timeout=timeout, proc=self._proc, banner=banner,
                    logs=logs, fatal=": Fatal: ", log_offsets=offsets,
                )
            tls_ports = [p for p in (self.imaps_port, self.pop3s_port) if p]
            wait_for_ports("dovecot", tls_ports, timeout=timeout, proc=self._proc, logs=logs)
        except Exception:
            self.kill()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down cleanly (SIGTERM); clients are disconnected."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def kill(self) -> None:
        """Die at once (SIGKILL to Dovecot and all its children), as in a crash."""
        if self._proc is None:
            return
        self._reap()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created in start()
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def restart(self, *, kill: bool = False, timeout: float = 10.0) -> DovecotServer:
        """Stop (or kill) and start again on the same ports, keeping users and mail."""
        self.kill() if kill else self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and delete the temp dir (kept if REGARDING_KEEP_PEERS is set)."""
        if self._own_root and not os.environ.get("REGARDING_KEEP_PEERS"):
            self.kill()  # a clean shutdown takes ~1 s and nothing of it is kept
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.stop()

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -------------------------------------------------------------------------- users

    def add_user(self, username: str, password: str) -> MailUser:
        """Create a user, usable at once; or change a password (then this takes ~1 s)."""
        _check_field(username, "username")
        _check_field(password, "password")
        if "/" in username or username.startswith("."):
            raise ValueError(f"username unusable as a file name: {username!r}")
        home = self.homes / username
        if not home.exists():
            home.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(home, self.mail_uid, self.mail_gid)
        previous = self.users.get(username)
        user = MailUser(username, password, home)
        self.users[username] = user
        self._write_user(user)
        if previous is not None and previous.password != password:
            self._wait_for_next_second()
        return user

    def remove_user(self, username: str) -> None:
        """Forget a user: logins fail from now on (takes ~1 s); the mail stays on disk."""
        if self.users.pop(username, None) is not None:
            (self.users_dir / username).unlink(missing_ok=True)
            self._wait_for_next_second()

    def _user(self, user: MailUser | str) -> MailUser:
        name = user.username if isinstance(user, MailUser) else user
        try:
            return self.users[name]
        except KeyError:
            raise KeyError(f"no such Dovecot user: {name}") from None

    # ------------------------------------------------------------------------ helpers

    def doveadm(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run doveadm against this instance, e.g. doveadm("mailbox", "create", "-u", u, "X").

        Returns the CompletedProcess (stdout/stderr as text); raises on failure if `check`.
        """
        result = subprocess.run(
            [DOVEADM, "-c", str(self.conf_path), *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )
        result.stdout = result.stdout.decode(errors="replace")
        result.stderr = result.stderr.decode(errors="replace")
        if check and result.returncode != 0:
            raise RuntimeError(
                f"doveadm {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr}{result.stdout}"
            )
        return result

    def create_mailbox(self, user: MailUser | str, name: str) -> None:
        """Create a folder (parents too); no error if it exists."""
        username = self._user(user).username
        res = self.doveadm("mailbox", "create", "-u", username, name, check=False)
        if res.returncode != 0 and "exists" not in res.stderr.lower():
            raise RuntimeError(f"doveadm mailbox create {name} failed:\n{res.stderr}")

    def deliver(
        self,
        user: MailUser | str,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: tuple[str, ...] = (),
        msg_time=None,
    ) -> int:
        """Put one raw message into a folder (created if missing); returns its UID.

        Uses IMAP APPEND with the user's password, as a mail client or the MTA would.
        """
        from imapclient import IMAPClient

        account = self._user(user)
        if folder.upper() != "INBOX":
            self.create_mailbox(account, folder)
        with IMAPClient(self.host, self.imap_port, ssl=False, timeout=30) as client:
            client.login(account.username, account.password)
            response = client.append(folder, raw, flags=flags, msg_time=msg_time)
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", response)
        if not match:
            raise RuntimeError(f"APPEND gave no APPENDUID: {response!r}")
        return int(match.group(1))

    def deliver_lda(self, user: MailUser | str, raw: bytes, sender: str) -> None:
        """Deliver one message to ``user`` through dovecot-lda, as an MTA would: with
        ``sieve=True`` the user's active Sieve script decides where it goes."""
        account = self._user(user)
        result = subprocess.run(
            [DOVECOT_LDA, "-c", str(self.conf_path), "-f", sender, "-d", account.username],
            input=raw, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"dovecot-lda failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')}\n{self.log_text()}")

    def imap_client(self, user: MailUser | str, *, tls: str | None = None):
        """A logged-in IMAPClient for `user`. tls: None, "starttls" or "implicit"."""
        from imapclient import IMAPClient

        account = self._user(user)
        if tls == "implicit":
            client = IMAPClient(self.host, self.imaps_port, ssl=True,
                                ssl_context=self._client_tls(), timeout=30)
        else:
            client = IMAPClient(self.host, self.imap_port, ssl=False, timeout=30)
            if tls == "starttls":
                client.starttls(self._client_tls())
        client.login(account.username, account.password)
        return client

    def pop3_client(self, user: MailUser | str, *, tls: str | None = None):
        """A logged-in poplib.POP3 for `user`. tls: None, "starttls" or "implicit"."""
        import poplib

        account = self._user(user)
        if tls == "implicit":
            client = poplib.POP3_SSL(self.host, self.pop3s_port, context=self._client_tls(),
                                     timeout=30)
        else:
            client = poplib.POP3(self.host, self.pop3_port, timeout=30)
            if tls == "starttls":
                client.stls(self._client_tls())
        client.user(account.username)
        client.pass_(account.password)
        return client

    def _client_tls(self):
        if self.cert is None:
            raise RuntimeError("this Dovecot was started without tls=True")
        return self.cert.client_context()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DovecotServer {self.host} imap={self.imap_port} pop3={self.pop3_port} {state}>"
