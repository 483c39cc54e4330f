#!/bin/bash
# The Docker peer of the differential tests: dockerd 20.10 (Debian's docker.io, whose CLI has BuildKit
# built in) on a private socket, with kiln's own busybox base image loaded as busybox:latest, so both
# engines build from the identical base (same layer, same config, same image ID).
#
#   scripts/docker-peer.sh start   install docker.io if missing, start dockerd if not up, load the base
#   scripts/docker-peer.sh stop    stop dockerd and its containerd (by PID file only), unmount leftovers
#   scripts/docker-peer.sh env     print `export DOCKER_HOST=... DOCKER_BUILDKIT=1 KILN_DOCKER_BIN=...`
#   scripts/docker-peer.sh status  exit 0 when the daemon answers
#
# Idempotent. All state is under $KILN_DOCKER_STATE (default /tmp/kiln-docker-peer): data root, exec
# root, socket, PID file, log. dockerd listens on that Unix socket only and changes nothing in the
# host's network (no bridge, no iptables): builds run with `--network none` (or host).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
STATE=${KILN_DOCKER_STATE:-/tmp/kiln-docker-peer}
SOCK="$STATE/docker.sock"
# Debian's 20.10 CLI: a newer docker CLI elsewhere on PATH may lack the buildx plugin and then cannot use BuildKit.
DOCKER_BIN=${KILN_DOCKER_BIN:-/usr/bin/docker}
export DOCKER_HOST="unix://$SOCK" DOCKER_BUILDKIT=1
log() { printf '[docker-peer] %s\n' "$*" >&2; }

up() { [ -S "$SOCK" ] && "$DOCKER_BIN" info >/dev/null 2>&1; }

install_docker() {
  local missing=()
  for p in docker.io containerd runc; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ -x "$DOCKER_BIN" ] || missing+=(docker.io)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  # `apt-get update` only when the package lists do not know docker.io yet (a fresh CI machine).
  apt-cache show docker.io >/dev/null 2>&1 || apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # The package's own service is not what the tests talk to: leave it off where systemd started it.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop docker.service docker.socket >/dev/null 2>&1 || true
  fi
}

start_daemon() {
  up && return 0
  mkdir -p "$STATE/data" "$STATE/exec"
  # A stale PID file from a daemon that died: its socket would make dockerd refuse to start.
  if [ -f "$STATE/dockerd.pid" ] && ! kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null; then
    rm -f "$STATE/dockerd.pid" "$SOCK"
  fi
  echo '{}' >"$STATE/daemon.json"
  log "starting dockerd (socket $SOCK, log $STATE/dockerd.log)"
  # --bridge=none/--iptables=false: no host network changes; --network none builds need no bridge.
  setsid dockerd --config-file "$STATE/daemon.json" --data-root "$STATE/data" --exec-root "$STATE/exec" \
    --pidfile "$STATE/dockerd.pid" -H "unix://$SOCK" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --storage-driver="${KILN_DOCKER_STORAGE_DRIVER:-overlay2}" >"$STATE/dockerd.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 120); do up && return 0; sleep 0.25; done
  log "dockerd did not answer within 30 s; the end of $STATE/dockerd.log:"
  tail -n 20 "$STATE/dockerd.log" >&2 || true
  return 1
}

load_base() {
  # kiln's busybox base, exported by kiln itself from a private store (the image depends only on the
  # host's busybox-static binary, so this is the image every kiln store builds `FROM busybox` on).
  local tar="$STATE/busybox-kiln.tar" want have
  want=$(cd "$repo" && node --import tsx "$repo/scripts/docker-peer-base.ts" "$tar" "$STATE/kiln-store")
  have=$("$DOCKER_BIN" image inspect --format '{{.Id}}' busybox:latest 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    log "loading kiln's busybox base ($want)"
    "$DOCKER_BIN" load -q -i "$tar" >&2
    have=$("$DOCKER_BIN" image inspect --format '{{.Id}}' busybox:latest)
    [ "$have" = "$want" ] || { log "busybox:latest in docker is $have, kiln's base is $want"; return 1; }
  fi
}

stop_daemon() {
  local pid ctrd
  ctrd=$(cat "$STATE/exec/containerd/containerd.pid" 2>/dev/null || true)
  if [ -f "$STATE/dockerd.pid" ]; then
    pid=$(cat "$STATE/dockerd.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$STATE/dockerd.pid"
  fi
  # dockerd normally stops the containerd it started; if that one outlived it, stop it by its PID file.
  if [ -n "$ctrd" ] && kill -0 "$ctrd" 2>/dev/null && grep -q containerd "/proc/$ctrd/comm" 2>/dev/null; then
    log "stopping containerd (pid $ctrd)"
    kill -TERM "$ctrd"
    for _ in $(seq 40); do kill -0 "$ctrd" 2>/dev/null || break; sleep 0.25; done
  fi
  awk -v p="$STATE/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}

# One start or stop at a time: test files that run in parallel may all ask for the daemon. (The daemon is
# started without fd 9, or it would hold the lock for as long as it runs.)
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.lock"
case "${1:-}" in start | stop) flock 9 ;; esac

case "${1:-}" in
  start)
    install_docker
    start_daemon
    load_base
    log "ready: DOCKER_HOST=$DOCKER_HOST"
    ;;
  stop) stop_daemon ;;
  env) printf 'export DOCKER_HOST=%q DOCKER_BUILDKIT=1 KILN_DOCKER_BIN=%q\n' "$DOCKER_HOST" "$DOCKER_BIN" ;;
  status) up ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac
