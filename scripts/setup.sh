#!/usr/bin/env bash
# Installs the system packages Cardwright's tests and PC/SC features need (Debian/Ubuntu),
# and starts pcscd with vsmartcard's virtual readers. Safe to run again.
set -euo pipefail

pkgs=(pcscd vsmartcard-vpcd libpcsclite-dev pkg-config pcsc-tools opensc yubico-piv-tool libssl-dev
      softhsm2 python3-pyscard openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pcscd without systemd: vpcd (vsmartcard) then listens on 127.0.0.1:35963 and :35964.
if ! pgrep -x pcscd >/dev/null; then
  echo "setup: starting pcscd"
  (pcscd --foreground >/tmp/cardwright-pcscd.log 2>&1 &)
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/35963) 2>/dev/null && break
    sleep 0.1
  done
fi

# Yubico's yubikit (PyPI yubikey-manager), an independent SCP11 host for
# tests/yubikit/scp11.py: a venv under target/ that also sees Debian's python3-pyscard.
yk_venv="$(dirname "$0")/../target/venv-yubikit"
yk_version=5.7.2
if ! "$yk_venv/bin/python" -c "import ykman, yubikit.securitydomain, smartcard" 2>/dev/null \
   || ! "$yk_venv/bin/pip" show yubikey-manager 2>/dev/null | grep -qx "Version: $yk_version"; then
  echo "setup: installing yubikey-manager $yk_version into target/venv-yubikit"
  # --clear: a venv moved with its target/ directory has dead script paths.
  /usr/bin/python3 -m venv --clear --system-site-packages "$yk_venv"
  "$yk_venv/bin/pip" install --quiet --disable-pip-version-check "yubikey-manager==$yk_version"
fi

# PostgreSQL for the store tests (CARDWRIGHT_PG_URL, default postgres://postgres@127.0.0.1:5432/test).
if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "setup: installing postgresql"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  echo "setup: starting postgresql"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  # Trust local TCP connections for the test database when the cluster is new.
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 \
    || su postgres -c "createdb test" 2>/dev/null || true
fi

# Headless Chromium and Node.js for the check-out page test (tests/browser, Playwright with
# Debian's chromium; playwright-core 1.61 runs on Debian's Node 18 and on newer ones).
browser_pkgs=()
[ -x /usr/bin/chromium ] || browser_pkgs+=(chromium)
command -v node >/dev/null || browser_pkgs+=(nodejs)
command -v npm >/dev/null || browser_pkgs+=(npm)
if [ ${#browser_pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${browser_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${browser_pkgs[@]}" >/dev/null
fi
browser_dir="$(dirname "$0")/../tests/browser"
want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$browser_dir/package.json")
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$browser_dir/node_modules/playwright-core/package.json" 2>/dev/null | head -1 || true)
if [ "$want" != "$have" ]; then
  echo "setup: npm ci in tests/browser"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
