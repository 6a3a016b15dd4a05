#!/usr/bin/env bash
# Quickstart: install what is missing, bring up the 3-node etcd lab and Redis, and start
# the bot in its embedded console mode against the lab (no Slack needed).
#   bash scripts/quickstart.sh            # then type: status lab
# Stop the lab and Redis afterwards with: bash scripts/quickstart.sh down
# A second console (another user, e.g. to approve a plan) against the running lab and Redis:
#   MEDIC_DRILL=1 MEDIC_CONSOLE_USER=console:bob bash scripts/quickstart.sh console
# (the console is you, console:<OS login>; a second name on one machine is a drill override,
# allowed only with MEDIC_DRILL=1 and shown as one)
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_DIR=${LAB_DIR:-/var/lib/etcd-medic-lab}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_PIDFILE=/run/etcd-medic-redis.pid

if [ "${1:-}" = down ]; then
  bash lab/lab.sh down
  if [ -f "$REDIS_PIDFILE" ]; then kill "$(cat "$REDIS_PIDFILE")" 2>/dev/null || true; rm -f "$REDIS_PIDFILE"; fi
  exit 0
fi

start_console() {
  MEDIC_CONFIG="$LAB_DIR/clusters.yaml" \
  MEDIC_SSH_KEY_FILE="$LAB_DIR/bot_id_ed25519" \
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  MEDIC_ROLE=console \
  exec node dist/src/main.js
}

if [ "${1:-}" = console ]; then
  # No setup and no lab.sh up: that would rebuild a lab someone is repairing.
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || { echo "quickstart: Redis is not running: run bash scripts/quickstart.sh first" >&2; exit 1; }
  [ -f "$LAB_DIR/clusters.yaml" ] || { echo "quickstart: no lab: run bash scripts/quickstart.sh first" >&2; exit 1; }
  start_console
fi

bash scripts/setup.sh

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "quickstart: starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory-policy noeviction --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile /var/log/etcd-medic-redis.log
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

bash lab/lab.sh up

echo "quickstart: starting etcd-medic in console mode (try: status lab, help, clusters; quit to leave)"
echo "quickstart: break the lab from another shell, e.g. bash lab/lab.sh stop-node node3"
echo "quickstart: a repair with approval: replace-member lab node3, then approve it from a second console:"
echo "quickstart:   MEDIC_DRILL=1 MEDIC_CONSOLE_USER=console:bob bash scripts/quickstart.sh console   (a drill override: you are console:$(id -un) otherwise)"
start_console
