#!/usr/bin/env bash
# Installs the real servers the tests start (tests/servers.py, tests/telemetry/conftest.py) from
# Debian packages: influxdb (influxd), victoria-metrics, prometheus, redis-server, postgresql
# (initdb, in /usr/lib/postgresql/*/bin), and the headless browser of the dashboard tests
# (tests/browser.py): chromium, with the DejaVu fonts its screenshots are drawn in.
# Idempotent: does nothing when all binaries (or files) exist.
# Never leaves a service running: the tests start their own servers on free loopback ports, and a
# packaged daemon would hold the default ports (8086, 8428, 9090, 6379, 5432).
set -euo pipefail

packages=(influxdb victoria-metrics prometheus redis-server postgresql chromium fonts-dejavu-core)
binaries=(influxd victoria-metrics prometheus redis-server initdb chromium /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ] ||
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null || { [[ "$1" == /* ]] && [ -e "$1" ]; }; }

missing=()
for i in "${!binaries[@]}"; do
  have "${binaries[$i]}" || missing+=("${packages[$i]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-servers: influxd, victoria-metrics, prometheus, redis-server, postgresql and chromium already installed; nothing to do"
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "install-servers: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

# Keep postinst scripts from starting the daemons: invoke-rc.d and deb-systemd-invoke ask
# /usr/sbin/policy-rc.d, and exit status 101 means "action forbidden". Only ours is removed
# afterwards (container images often ship their own, which stays as it was).
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
  own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then as_root rm -f "$policy"; fi; }
trap cleanup EXIT

# PIDs of the packaged daemons (running as the packages' system users, so never a test's own
# server), before and after installing: any new one a postinst started anyway is stopped by PID.
daemon_pids() {
  local users="" u
  for u in influxdb _victoria-metrics prometheus redis postgres; do
    id -u "$u" >/dev/null 2>&1 && users="${users:+$users,}$u"
  done
  [ -n "$users" ] || return 0
  pgrep -u "$users" -x 'influxd|victoria-metric|prometheus|redis-server|postgres' 2>/dev/null | sort || true
}
before=$(daemon_pids)

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
}
# apt-get update only when needed: no package lists yet, or installing from them failed
# (e.g. stale lists pointing at versions the mirror no longer has).
updated=""
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_install; then
  as_root apt-get update -qq
  updated=" (after apt-get update)"
  apt_install
fi

stopped=""
for pid in $(comm -13 <(echo "$before") <(daemon_pids)); do
  as_root kill "$pid" 2>/dev/null && stopped="$stopped $pid"
done

echo "install-servers: installed ${packages[*]}${updated}; missing before: ${missing[*]}${stopped:+; stopped daemons started by postinst (PIDs$stopped)}"
