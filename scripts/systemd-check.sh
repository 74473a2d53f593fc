#!/usr/bin/env bash
# Run the shipped unit under a real systemd, on a machine (or container) whose PID 1 is not
# systemd: boots systemd as PID 1 of a fresh PID + mount namespace with a private /tmp, then
# installs osteoscreen as systemd/osteoscreen.service says (binary in /usr/local/bin, config
# in /etc/osteoscreen, unit in /etc/systemd/system: this changes the host), and checks,
# under the full sandbox: ready (Type=notify), a DX and a CT study analysed and written,
# the watchdog pinged, reload, kill -9 restarted by Restart=on-failure, stop exits 0.
# Needs root, systemd, dcmtk. Usage: scripts/systemd-check.sh [path/to/osteoscreen]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/osteoscreen}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release first)"; exit 2; }
work=$(mktemp -d)

unshare --pid --fork --mount-proc --mount \
  sh -c 'mount -t tmpfs tmpfs /tmp && exec /lib/systemd/systemd --system' \
  >"$work/systemd.log" 2>&1 &
outer=$!
cleanup() { [ -n "${pid1:-}" ] && kill -9 "$pid1" 2>/dev/null; wait "$outer" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  pid1=$(pgrep -P "$outer" -f /lib/systemd/systemd || true)
  [ -n "$pid1" ] && break
  sleep 0.1
done
[ -n "$pid1" ] || { cat "$work/systemd.log"; echo "FAIL: systemd did not start"; exit 1; }
in_ns() { timeout 60 nsenter -t "$pid1" -a "$@"; }
for _ in $(seq 120); do
  state=$(in_ns systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.5
done
echo "systemd (PID $pid1 outside, 1 inside): $state"

install -m 755 "$bin" /usr/local/bin/osteoscreen
install -D -m 644 config/osteoscreen.toml /etc/osteoscreen/osteoscreen.toml
install -m 644 systemd/osteoscreen.service /etc/systemd/system/
in_ns systemctl daemon-reload
t0=$(date +%s)
sleep 1
in_ns systemctl start osteoscreen
show() { in_ns systemctl show osteoscreen -p "$1" --value; }
journal() { in_ns journalctl -u osteoscreen --no-pager --since "@$t0"; }
fail() { journal | tail -40; echo "FAIL: $*"; exit 1; }
[ "$(show ActiveState)" = active ] || fail "not active after start"

# Seeds of this run's own, so the studies are new to a state directory kept from before.
seed=$((t0 % 100000))
/usr/local/bin/osteoscreen synth --studies 1 --modality dx --size 512x640 --seed "$seed" --out "$work/dx" >/dev/null
/usr/local/bin/osteoscreen synth --studies 1 --modality ct --seed "$((seed + 1))" --ct-slice-mm 3 --out "$work/ct" >/dev/null
storescu -aet MODALITY -aec OSTEOSCREEN +sd +r +sp '*.dcm' 127.0.0.1 11112 "$work/dx" "$work/ct"
study_of() { dcmdump +P StudyInstanceUID "$(find "$1" -name '*.dcm' | head -1)" | sed 's/.*\[\(.*\)\].*/\1/'; }
studies="$(study_of "$work/dx") $(study_of "$work/ct")"
for _ in $(seq 120); do
  done_=0
  for s in $studies; do
    journal | grep -q "study finished study_uid=\"$s\".*outcome=done" && done_=$((done_ + 1))
  done
  [ "$done_" -ge 2 ] && break
  sleep 1
done
[ "$done_" -ge 2 ] || fail "studies not analysed"
results=$(in_ns find /var/lib/private/osteoscreen/results -name '*.dcm' -newermt "@$t0" | wc -l)
[ "$results" -ge 4 ] || fail "expected an SR and a key image per study, found $results files"
[ -n "$(show WatchdogTimestamp)" ] || fail "the watchdog was never pinged"
in_ns systemctl reload osteoscreen
sleep 1
[ "$(show ActiveState)" = active ] || fail "not active after reload"
first=$(show MainPID)
in_ns kill -9 "$first"
for _ in $(seq 30); do
  [ "$(show NRestarts)" -ge 1 ] && [ "$(show ActiveState)" = active ] && break
  sleep 1
done
[ "$(show NRestarts)" -ge 1 ] || fail "kill -9 was not followed by a restart"
in_ns systemctl stop osteoscreen
[ "$(show Result)" = success ] && [ "$(show ExecMainStatus)" = 0 ] || fail "stop did not exit 0"
journal | grep -E "ready|study finished|reloaded|shutdown complete" | cut -c1-160
echo "PASS: $results result files; restarted after kill -9 (PID $first -> another); stopped with status 0"
