#!/usr/bin/env bash
# Jasmin (PyPI `jasmin`), the SMSC the smpp crate's tests go through:
#
#   ESME (cardwright, smpp://cwesme:cwpass@127.0.0.1:2775)  →  Jasmin  →  SMPP client connector
#   "handset"  →  the handset's SMSC-facing endpoint (an SMPP server, 127.0.0.1:2776)
#
# Usage: scripts/smsc.sh [start|stop|restart|status|configure]   (default: start)
#   start      install Jasmin into a venv (once), start jasmind against the local RabbitMQ
#              (127.0.0.1:5672, guest/guest) and Redis (127.0.0.1:6379), wait for its SMPP
#              server (2775) and jCli (8990), then configure it through jCli. Idempotent.
#   stop       stop the jasmind this script started (or one of the same venv started elsewhere).
#   restart    stop, then start.
#   status     exit 0 when Jasmin's SMPP server and jCli answer.
#   configure  add the jCli configuration to a running Jasmin that lacks it (to change it,
#              restart: every start begins from an empty configuration store).
#
# Environment (defaults in brackets):
#   CARDWRIGHT_CACHE [~/.cache/cardwright]   where the venv lives (jasmin-<version>/)
#   SMSC_DIR [target/smsc]                   config, logs, store and pid file
#   SMSC_SMPP_PORT [2775]  SMSC_JCLI_PORT [8990]
#   SMSC_HANDSET_PORT [2776]                 where the handset endpoint listens
#   SMSC_ESME_USER/SMSC_ESME_PASSWORD [cwesme/cwpass]        our ESME's Jasmin account
#   SMSC_HANDSET_USER/SMSC_HANDSET_PASSWORD [jasmin/jaspass] what Jasmin binds to the endpoint with
# Quiet when it works; a message on stderr and a non-zero exit when it does not.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
version=0.11.0
cache="${CARDWRIGHT_CACHE:-$HOME/.cache/cardwright}"
venv="$cache/jasmin-$version"
state="${SMSC_DIR:-$root/target/smsc}"
smpp_port="${SMSC_SMPP_PORT:-2775}"
jcli_port="${SMSC_JCLI_PORT:-8990}"
handset_port="${SMSC_HANDSET_PORT:-2776}"
esme_user="${SMSC_ESME_USER:-cwesme}"
esme_pass="${SMSC_ESME_PASSWORD:-cwpass}"
handset_user="${SMSC_HANDSET_USER:-jasmin}"
handset_pass="${SMSC_HANDSET_PASSWORD:-jaspass}"
pidfile="$state/jasmind.pid"

die() { echo "smsc: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  local req="$here/smsc-requirements.txt" stamp="$venv/.requirements"
  if [ -x "$venv/bin/jasmind.py" ] && cmp -s "$req" "$stamp"; then return; fi
  command -v python3 >/dev/null || die "python3 is needed"
  mkdir -p "$cache"
  # --clear: a half-made venv from an interrupted install is started over.
  python3 -m venv --clear "$venv" || die "cannot create the venv $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >"$cache/jasmin-pip.log" 2>&1 \
    || die "pip install failed; see $cache/jasmin-pip.log"
  cp "$req" "$stamp"
}

write_config() {
  mkdir -p "$state/etc/jasmin/store" "$state/var/log/jasmin"
  local spec
  spec="$(ls "$venv"/lib/python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml 2>/dev/null | head -1)"
  [ -n "$spec" ] || die "txamqp's AMQP 0-9-1 spec is missing from $venv"
  # Everything bound to the loopback; the HTTP API is not started. Jasmin's pip package ships
  # no amqp0-9-1.xml (the sdist's misc/config/resource does), so txamqp's copy is used.
  cat >"$state/etc/jasmin/jasmin.cfg" <<CFG
[smpp-server]
bind = 127.0.0.1
port = $smpp_port
log_level = INFO
[smpp-server-pb]
bind = 127.0.0.1
[client-management]
bind = 127.0.0.1
[router]
bind = 127.0.0.1
[http-api]
bind = 127.0.0.1
[amqp-broker]
host = 127.0.0.1
port = 5672
username = guest
password = guest
vhost = /
spec = $spec
[redis-client]
host = 127.0.0.1
port = 6379
dbid = 0
[jcli]
bind = 127.0.0.1
port = $jcli_port
authentication = False
# A receipt can reach Jasmin before the submit_sm_resp it refers to has been recorded (a
# handset answers at once): Jasmin then looks the message up again after
# dlr_lookup_retry_delay, 10 s and twice by default, after which the receipt is lost. Here:
# every second for 30 s.
[dlr]
dlr_lookup_retry_delay = 1
dlr_lookup_max_retries = 30
CFG
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  install
  if running && port_open "$smpp_port" && port_open "$jcli_port"; then
    configured || configure
    return
  fi
  # A Jasmin started from another checkout (its own state directory) that answers with our
  # configuration is used as it is (stop stops it too).
  if port_open "$smpp_port" && port_open "$jcli_port" && configured; then
    echo "smsc: using the Jasmin already running on $smpp_port (not started here)" >&2
    return
  fi
  port_open "$smpp_port" && die "port $smpp_port is taken by something this script did not start"
  port_open 5672 || die "RabbitMQ is not listening on 127.0.0.1:5672"
  port_open 6379 || die "Redis is not listening on 127.0.0.1:6379"
  write_config
  # No persisted jCli profile: Jasmin would load it at start-up, and configure adds everything
  # afresh (see configure for why a connector is never removed and re-added).
  rm -f "$state"/etc/jasmin/store/jcli-prod.*
  # ROOT_PATH: Jasmin derives /etc/jasmin (store, resources) and /var/log/jasmin from it.
  ( cd "$state" && ROOT_PATH="$state" exec setsid "$venv/bin/jasmind.py" \
      -c "$state/etc/jasmin/jasmin.cfg" --disable-http-api \
      --enable-dlr-lookup --enable-dlr-thrower \
      >"$state/jasmind.out" 2>&1 ) &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if port_open "$smpp_port" && port_open "$jcli_port"; then break; fi
    running || die "jasmind exited; see $state/jasmind.out and $state/var/log/jasmin/"
    sleep 0.2
  done
  port_open "$smpp_port" && port_open "$jcli_port" \
    || die "jasmind did not open ports $smpp_port and $jcli_port in 30 s; see $state/jasmind.out"
  configure
}

stop() {
  if running; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  # A jasmind of this venv started from another checkout (see start) is stopped too.
  if port_open "$smpp_port"; then
    pkill -f "$venv/bin/jasmind.py" 2>/dev/null || true
  fi
  for _ in $(seq 1 50); do port_open "$smpp_port" || return 0; sleep 0.1; done
  die "port $smpp_port is still open after stopping jasmind"
}

# Whether the running Jasmin has our connector, user and routes.
configured() {
  local out
  out="$(jcli "smppccm -l" "user -l" "mtrouter -l" "morouter -l")" || return 1
  grep -q "#handset .*started" <<<"$out" && grep -q "#$esme_user " <<<"$out" \
    && grep -q "smppc(handset)" <<<"$out" && grep -q "smpps($esme_user)" <<<"$out"
}

# Runs jCli commands (one per argument), prints the output.
jcli() {
  JCLI_PORT="$jcli_port" "$venv/bin/python" - "$@" <<'PY'
import os, re, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(os.environ["JCLI_PORT"])), timeout=15)
buf = b""
def until(pattern):
    global buf
    end = time.time() + 15
    while time.time() < end:
        if re.search(pattern, buf):
            out, buf = buf, b""
            return out.decode(errors="replace")
        d = s.recv(4096)
        if not d:
            break
        buf += re.sub(rb"\xff[\xfb-\xfe].", b"", d)
    raise SystemExit("jCli did not answer: %r" % buf[-200:])
until(rb"Session ref")
for line in sys.argv[1:]:
    s.sendall(line.encode() + b"\r\n")
    print(until(rb"(jcli : |> )$"))
s.sendall(b"quit\r\n")
PY
}

# Adds the configuration through jCli (a telnet console), line by line; any failing line is an
# error. It only adds: stopping and re-adding a connector with the same cid leaves Jasmin
# 0.11.1 with a stale AMQP consumer that takes the next MT and drops it (AttributeError
# 'NoneType' object has no attribute 'get' in submit_sm_callback), so a changed configuration
# means `restart`, which starts from an empty store.
configure() {
  JCLI_PORT="$jcli_port" "$venv/bin/python" - <<PY || die "jCli configuration failed"
import os, re, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(os.environ["JCLI_PORT"])), timeout=15)
buf = b""
def until_prompt(wait=15, banner=False):
    global buf
    end = time.time() + wait
    while time.time() < end:
        if re.search(rb"(jcli : |> )\$", buf) or (banner and b"Session ref" in buf):
            out, buf = buf, b""
            return out.decode(errors="replace")
        d = s.recv(4096)
        if not d:
            break
        buf += re.sub(rb"\xff[\xfb-\xfe].", b"", d)
    raise SystemExit("jCli did not answer: %r" % buf[-200:])
# The banner; its first prompt only comes once a line has been sent.
until_prompt(banner=True)
script = """
group -a
gid cardwright
ok
user -a
username $esme_user
password $esme_pass
gid cardwright
uid $esme_user
ok
smppccm -a
cid handset
host 127.0.0.1
port $handset_port
username $handset_user
password $handset_pass
bind transceiver
con_fail_delay 1
con_loss_delay 1
elink_interval 10
submit_throughput 0
ok
smppccm -1 handset
mtrouter -a
type DefaultRoute
connector smppc(handset)
rate 0.00
ok
morouter -a
type DefaultRoute
connector smpps($esme_user)
ok
"""
bad = re.compile(r"(Error|Unknown|Invalid|Cannot|not found|failed|Usage)", re.I)
for line in script.strip().splitlines():
    s.sendall(line.encode() + b"\r\n")
    out = until_prompt()
    if bad.search(out.replace(line, "", 1)):
        sys.exit("jCli: %r -> %s" % (line, out.strip()))
s.sendall(b"quit\r\n")
PY
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) port_open "$smpp_port" && port_open "$jcli_port" || { echo "smsc: Jasmin is not running" >&2; exit 1; } ;;
  configure) configured || configure ;;
  *) die "usage: $0 [start|stop|restart|status|configure]" ;;
esac
