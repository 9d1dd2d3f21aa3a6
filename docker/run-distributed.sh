#!/usr/bin/env bash
# The compose topology without Docker: two gateway replicas as processes on 127.0.0.1:8421 and
# :8422, on the local PostgreSQL and NATS JetStream, plus the reference brand agent on :9000
# when this build has `switchboard example-agent`. Ctrl-C stops them all.
#
#   docker/run-distributed.sh            # from the repository root, in the project's venv
#
# Settings (environment): SWITCHBOARD_DATABASE_URL (default: database `switchboard` on the
# local PostgreSQL, created if missing), SWITCHBOARD_NATS_URL (nats://127.0.0.1:4222),
# SWITCHBOARD_ADMIN_TOKEN (made once and kept in var/distributed/admin_token), RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
RUN_DIR="${RUN_DIR:-var/distributed}"
PG_SERVER="${SWITCHBOARD_PG_SERVER:-postgresql://postgres@127.0.0.1:5432}"
export SWITCHBOARD_DATABASE_URL="${SWITCHBOARD_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/switchboard}"
export SWITCHBOARD_NATS_URL="${SWITCHBOARD_NATS_URL:-nats://127.0.0.1:4222}"
export SWITCHBOARD_GATEWAY_KEY_FILE="$RUN_DIR/gateway_key.jwk"
export SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS="${SWITCHBOARD_ALLOW_PRIVATE_ENDPOINTS:-127.0.0.0/8}"
mkdir -p "$RUN_DIR"

if [ -z "${SWITCHBOARD_ADMIN_TOKEN:-}" ]; then
  if [ ! -f "$RUN_DIR/admin_token" ]; then
    (umask 077; echo "sbt_$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')" \
      > "$RUN_DIR/admin_token")
  fi
  SWITCHBOARD_ADMIN_TOKEN="$(cat "$RUN_DIR/admin_token")"
fi
export SWITCHBOARD_ADMIN_TOKEN

# The database named in SWITCHBOARD_DATABASE_URL, created on the server if it is missing.
"$PYTHON" - "$PG_SERVER" "${SWITCHBOARD_DATABASE_URL##*/}" <<'PY'
import asyncio, sys
import asyncpg

async def main(server: str, name: str) -> None:
    conn = await asyncpg.connect(server + "/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"run-distributed: created database {name}")
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
PY

pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; }
trap stop EXIT INT TERM

wait_ready() {
  for _ in $(seq 1 100); do
    "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "$1/readyz" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "run-distributed: $1 did not become ready; see $RUN_DIR/*.log" >&2
  return 1
}

for n in 1 2; do
  SWITCHBOARD_PORT=$((8420 + n)) SWITCHBOARD_DATA_DIR="$RUN_DIR/replica-$n" \
    "$PYTHON" -m gateway.cli serve > "$RUN_DIR/replica-$n.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$((8420 + n))"  # one at a time: the first makes the key
  echo "run-distributed: replica $n on http://127.0.0.1:$((8420 + n)) (log $RUN_DIR/replica-$n.log)"
done

if "$PYTHON" -m gateway.cli --help | grep -q "example-agent"; then
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" docker/bootstrap.py --gateway http://127.0.0.1:8421 --brand acme.example \
    --agent support@acme.example --endpoint http://127.0.0.1:9000/ \
    --key "$RUN_DIR/agent_key.jwk" --audience "${SWITCHBOARD_DOMAIN:-gateway.localhost}"
  "$PYTHON" -m gateway.cli example-agent --port 9000 --gateway http://127.0.0.1:8422 \
    --address support@acme.example --key "$RUN_DIR/agent_key.jwk" \
    > "$RUN_DIR/brand-agent.log" 2>&1 &
  pids+=($!)
  echo "run-distributed: brand agent support@acme.example on http://127.0.0.1:9000"
else
  echo "run-distributed: this build has no 'switchboard example-agent'; no brand agent started"
fi
echo "run-distributed: admin token in $RUN_DIR/admin_token (or SWITCHBOARD_ADMIN_TOKEN); Ctrl-C stops"
wait
