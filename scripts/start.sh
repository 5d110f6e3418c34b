#!/usr/bin/env bash
# Start Regarding on https://localhost:3000 with the demo organization: the README's first
# command.
#
#   bash scripts/start.sh
#
# On a fresh Debian or Ubuntu machine with Python 3.11 or newer it creates .venv (installing
# python3-venv when Debian lacks it), installs requirements.txt into it when they changed,
# migrates the database, loads the demo organization, makes a self-signed certificate for
# localhost (unless REGARDING_TLS_CERT and REGARDING_TLS_KEY name one), then runs gunicorn
# over HTTPS and, when the sync engine is there, a sync worker beside it. It prints the URLs
# and the demo sign-ins and runs until Ctrl-C, which stops both. Safe to run again: what is
# in place is kept, so a second start takes seconds.
#
# Environment: PORT (3000), REGARDING_BIND (127.0.0.1: the demo users' passwords are
# published, so only this machine can reach it unless told otherwise, e.g. 0.0.0.0),
# REGARDING_WEB_WORKERS (2), REGARDING_WEB_THREADS (4), PYTHON (the interpreter that
# creates .venv), and every REGARDING_* variable of .env.sample (REGARDING_INSTANCE_DIR,
# REGARDING_DATABASE_URL, ...).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[start.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

VENV=.venv
PORT="${PORT:-3000}"
BIND="${REGARDING_BIND:-127.0.0.1}"
WORKERS="${REGARDING_WEB_WORKERS:-2}"
THREADS="${REGARDING_WEB_THREADS:-4}"

# -------------------------------------------------------------------------- Python 3.11+

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
    say "$VENV does not run Python 3.11 or newer: recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)" || die "Python 3.11 or newer is needed (apt-get install python3)"
    if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
        command -v apt-get >/dev/null 2>&1 || die "$PY cannot create virtual environments"
        say "installing python3-venv"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    say "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi

# Install only when requirements.txt (or the venv's Python) changed since the last start.
# (scripts/test.sh keeps its own stamp for requirements-dev.txt, a superset.)
stamp="$VENV/.start-requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)-$("$VENV/bin/python" -c \
    'import sys; print(sys.version.split()[0])')"
# pip's own output goes to a log; the console gets one line per package as it comes, so a
# first start (about a minute) is not a silent one, and the log's end if pip fails.
pip_progress() {
    local line n=0
    while IFS= read -r line; do
        printf '%s\n' "$line" >> "$VENV/pip-install.log"
        case "$line" in
            Collecting\ *)
                n=$((n + 1))
                line="${line#Collecting }"
                say "  $n. ${line%% (*}" ;;
            Requirement\ already\ satisfied:\ *)
                n=$((n + 1))
                line="${line#Requirement already satisfied: }"
                say "  $n. ${line%% in *} (already there)" ;;
            Installing\ collected\ packages:*) say "  installing the packages that were not there (a few seconds)" ;;
        esac
    done
}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing requirements.txt into $VENV (about a minute the first time; log: $VENV/pip-install.log)"
    : > "$VENV/pip-install.log"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
            -r requirements.txt 2>&1 | pip_progress; then
        tail -n 20 "$VENV/pip-install.log" >&2
        die "pip could not install requirements.txt (whole log: $VENV/pip-install.log)"
    fi
    say "requirements installed"
    printf '%s\n' "$want" > "$stamp"
fi

# --------------------------------------------------------------- database, demo, TLS

flask() { "$VENV/bin/flask" --app server "$@"; }

say "migrating the database"
flask db upgrade 2>&1 | { grep -v '\[alembic.runtime.migration\] \(Context impl\|Will assume\)' || true; } >&2
say "loading the demo organization (once)"
summary="$(flask seed-demo)"  # (an assignment, so that a failure stops the script)
say "demo: ${summary##*$'\n'}"
if [ -n "${REGARDING_TLS_CERT:-}" ] && [ -n "${REGARDING_TLS_KEY:-}" ]; then
    cert="$REGARDING_TLS_CERT"
    key="$REGARDING_TLS_KEY"
else
    paths="$(flask tls-cert)"
    cert="$(printf '%s\n' "$paths" | sed -n 1p)"
    key="$(printf '%s\n' "$paths" | sed -n 2p)"
fi
[ -r "$cert" ] && [ -r "$key" ] || die "cannot read the TLS certificate $cert or key $key"

# ------------------------------------------------------------------------- processes

children=()
stop() {
    trap - EXIT INT TERM
    local pid
    for pid in "${children[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

signins="$("$VENV/bin/python" -c '
from server.demo import DEMO_SIGNINS
for email, password, role in DEMO_SIGNINS:
    print(f"    {email:32s} {password:20s} {role}")')"

# Logging (scripts/gunicorn.conf.py): warnings and errors on the console, everything with
# each browser's refused handshake of the self-signed certificate in instance/server.log.
say "starting the web server and the sync worker"
"$VENV/bin/gunicorn" server.wsgi:app --config scripts/gunicorn.conf.py \
    --bind "$BIND:$PORT" --workers "$WORKERS" --worker-class gthread --threads "$THREADS" \
    --certfile "$cert" --keyfile "$key" --graceful-timeout 10 --no-control-socket &
web=$!
children+=("$web")

if [ -f server/sync/cli.py ]; then
    # The program itself, not the ``flask`` function: run in the background, the function
    # is a subshell, and the TERM that ``stop`` sends would end that subshell and leave the
    # worker running (holding SQLite's worker lock) after the script is gone.
    "$VENV/bin/flask" --app server sync worker &
    children+=("$!")
    worker_line="sync worker: running beside the web server (Ctrl-C stops both)"
else
    worker_line="sync worker: not part of this checkout yet"
fi

# Print the banner once the server listens, so that it is the last thing on the screen.
for _ in $(seq 1 120); do
    kill -0 "$web" 2>/dev/null || break
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.5
done

if [ "$BIND" = "127.0.0.1" ] || [ "$BIND" = "localhost" ]; then
    bind_note=" only: the demo passwords below are public (REGARDING_BIND=0.0.0.0 opens it up)"
else
    bind_note=": reachable from other machines with the public demo passwords below"
fi
base="${REGARDING_BASE_URL:-https://localhost:$PORT}"
base="${base%/}"
cat <<EOF

  Regarding runs on $base
    the app            $base/
    add-in preview     $base/addin/preview
    add-in for admins  $base/admin/addin
    $worker_line
  The certificate is self-signed unless you gave one: let the browser trust it for localhost.
  The server's full log: ${REGARDING_INSTANCE_DIR:-instance}/server.log.
  Listening on $BIND:$PORT$bind_note.

  Demo sign-ins (Contoso Ltd):
$signins

  Ctrl-C stops it.

EOF

# Until Ctrl-C or the web server ends; the EXIT trap stops whatever is left.
wait "$web"
