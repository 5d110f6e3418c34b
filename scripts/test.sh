#!/usr/bin/env bash
# The one test command: install what the test suite needs, then run it.
#
#   bash scripts/test.sh [pytest arguments...]
#
# On Debian 12 (root, or a user with sudo) it installs the real protocol peers the tests
# start (Dovecot IMAP/POP3, Debian's Chromium for the add-in pane) when they are missing,
# creates .venv if missing, installs requirements-dev.txt into it when the requirements
# changed, installs the npm dev tools when package.json asks for them, and runs
# `.venv/bin/python -m pytest "$@"`. Its exit code is pytest's ("no tests collected",
# code 5, included: that is a failure too). Safe to run again: what is in place is skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[test.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

# Debian packages the suite needs: IMAP/POP3 peer (with ManageSieve and Sieve at delivery),
# the browser, a font for it to render; isync's mbsync is bench/ingest.py's reference (a C
# sync tool on the same mailbox).
APT_PACKAGES=(dovecot-imapd dovecot-pop3d dovecot-sieve dovecot-managesieved chromium fonts-dejavu-core ca-certificates swaks isync)
PYTHON="${PYTHON:-python3}"
VENV=.venv

# ----------------------------------------------------------------------------- helpers

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ] && [ "${CI:-}" != "true" ]; then
            sudo "$@"
        else
            sudo -n "$@"  # CI, no terminal: never wait for a password prompt
        fi
    else
        die "need root (or sudo) to run: $*"
    fi
}

deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        deb_installed "$pkg" || printf '%s\n' "$pkg"
    done
}

apt_install() {
    # Install Debian packages, running `apt-get update` first only when some are missing.
    local missing
    mapfile -t missing < <(missing_packages "$@")
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    # Don't let package scripts start the system's own Dovecot (or any other daemon):
    # the tests start their own instances on free loopback ports.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    local rc=0
    {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
            update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
            install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if [ -n "$made_policy" ]; then
        as_root rm -f "$policy"
    fi
    [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed ($rc)"
}

hash_files() {
    # sha256 of the files' contents together; a missing file counts as empty.
    local f
    for f in "$@"; do
        if [ -f "$f" ]; then cat "$f"; fi
    done | sha256sum | cut -d' ' -f1
}

# ------------------------------------------------------------------- system packages

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    packages=("${APT_PACKAGES[@]}")
    if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        packages+=(python3 python3-venv)
    fi
    if [ -f package.json ] && ! command -v npm >/dev/null 2>&1; then
        packages+=(npm)
    fi
    apt_install "${packages[@]}"
else
    say "not a Debian system: checking the peers are installed some other way"
    for tool in dovecot doveadm chromium; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; install it first"
    done
fi

# ------------------------------------------------------------------------ Python venv

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "$VENV is broken (its Python does not run): recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the requirements (or the venv's Python) changed since last time.
req_stamp="$VENV/.requirements.sha256"
req_hash="$(hash_files requirements.txt requirements-dev.txt)-$("$VENV/bin/python" -c \
    'import sys; print(sys.version.split()[0])')"
if [ "$(cat "$req_stamp" 2>/dev/null)" != "$req_hash" ]; then
    say "installing requirements-dev.txt into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    printf '%s\n' "$req_hash" > "$req_stamp"
fi

# ---------------------------------------------------------------------- npm dev tools

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1  # the tests use Debian's /usr/bin/chromium
if [ -f package.json ]; then
    npm_stamp=node_modules/.regarding-install.sha256
    npm_hash="$(hash_files package.json package-lock.json)"
    if [ ! -d node_modules ] || [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_hash" ]; then
        if [ -f package-lock.json ]; then
            say "installing npm dev tools (npm ci)"
            npm ci --no-audit --no-fund --loglevel=error
        else
            say "installing npm dev tools (npm install)"
            npm install --no-audit --no-fund --loglevel=error
        fi
        hash_files package.json package-lock.json > "$npm_stamp"  # the lock may be new
    fi
fi

# ------------------------------------------------------------------------------ tests

# Both cores by default (pytest-xdist, a test file per worker at a time); any -n/-p given
# on the command line wins.
args=("$@")
case " $* " in
    *" -n "*|*" -n"[0-9]*|*" --numprocesses"*|*" -p no:xdist "*) ;;
    *) args=(-n auto --dist loadfile "${args[@]}") ;;
esac
rc=0
"$VENV/bin/python" -m pytest "${args[@]}" || rc=$?
if [ "$rc" -eq 5 ]; then
    say "pytest collected no tests: that is a failure"
fi
exit "$rc"
