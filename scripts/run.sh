#!/usr/bin/env bash
# `make run`: migrate, seed the demo data, then every process in the foreground under honcho.
# Ctrl-C or SIGTERM reaches the process manager (this script execs it), which stops every
# process it started and exits 0 once all have.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT="${PORT:-8000}"
# This machine only, unless told otherwise: the demo has well-known logins (admin/admin).
export BIND_ADDRESS="${BIND_ADDRESS:-127.0.0.1}"
export DJANGO_SETTINGS_MODULE=orderproj.settings
# The demo serves the simulated payment service and warehouse under /sim/ unless told not to;
# honcho gives each process its own PORT, so the clients are told the web's.
export SERVE_SIMULATORS="${SERVE_SIMULATORS:-true}"
export PAYMENT_API_URL="${PAYMENT_API_URL:-http://127.0.0.1:${PORT}/sim/payments}"
export WAREHOUSE_API_URL="${WAREHOUSE_API_URL:-http://127.0.0.1:${PORT}/sim/warehouse}"
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"
# Worker processes (docs/operating.md: sizing the workers).
export WORKER_POOL="${WORKER_POOL:-prefork}"
export WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-2}"
# Readable log lines for people (honcho prefixes each with its process); JSON elsewhere.
export LOG_FORMAT="${LOG_FORMAT:-plain}"

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
# The demo's stock, also handed to the simulated warehouse (it adds only SKUs it lacks).
export WAREHOUSE_SIM_INITIAL_STOCK="${WAREHOUSE_SIM_INITIAL_STOCK:-${VAR_DIR:-var}/demo-warehouse-stock.json}"
banner="${VAR_DIR:-var}/banner.txt"
webhook_secret="${VAR_DIR:-var}/demo-webhook-secret"
.venv/bin/python manage.py seed_demo --port "$PORT" \
  --warehouse-stock-file "$WAREHOUSE_SIM_INITIAL_STOCK" --banner-file "$banner" \
  --webhook-url "http://127.0.0.1:$PORT/sim/receiver/hooks/demo" \
  --webhook-secret-file "$webhook_secret"
# The demo receiver verifies each delivery's signature with the demo subscription's secret.
RECEIVER_SIM_SECRET="$(cat "$webhook_secret")"
export RECEIVER_SIM_SECRET

# honcho runs the Procfile; scripts/procs.py gives each process STOP_GRACE_SECONDS to stop and
# prints the banner again once everything is healthy.
exec .venv/bin/python scripts/procs.py Procfile "$PORT" "$banner"
