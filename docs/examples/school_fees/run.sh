#!/usr/bin/env bash
# Start the example column in development, beside the platform of `make run`.
#
#   docs/examples/school_fees/run.sh
#
# The three credentials come from the environment (SCHOOL_FEES_CLIENT_ID, SCHOOL_FEES_CLIENT_SECRET,
# SCHOOL_FEES_CASHIER_KEY) or, for those not set, from var/school_fees.env, which the development
# seed of `make run` writes when it registers the column (README.md, "Registering the column").
# PYTHON defaults to the repository's .venv, which has every library the example needs
# (see requirements.txt for a venv of its own).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
PORT="${SCHOOL_FEES_PORT:-8443}"
NOTIFY_PORT="${SCHOOL_FEES_NOTIFY_PORT:-8081}"
state="${SCHOOL_FEES_STATE_DIR:-$root/var/school_fees}"
mkdir -p "$state"

creds="${SCHOOL_FEES_ENV_FILE:-${WOJIA_VAR_DIR:-$root/var}/school_fees.env}"
if [ -r "$creds" ]; then
  # NAME=value lines, read (not sourced); a variable already set wins.
  while IFS='=' read -r name value; do
    case "$name" in
      SCHOOL_FEES_CLIENT_ID | SCHOOL_FEES_CLIENT_SECRET | SCHOOL_FEES_CASHIER_KEY)
        if [ -z "${!name:-}" ]; then printf -v "$name" '%s' "$value"; fi ;;
    esac
  done < "$creds"
fi

: "${SCHOOL_FEES_CLIENT_ID:?run the development seed (make run) or register the column (README.md) and set SCHOOL_FEES_CLIENT_ID}"
: "${SCHOOL_FEES_CLIENT_SECRET:?set SCHOOL_FEES_CLIENT_SECRET (shown once at registration)}"
: "${SCHOOL_FEES_CASHIER_KEY:?set SCHOOL_FEES_CASHIER_KEY (shown once when the cashier was opened)}"
export SCHOOL_FEES_ISSUER="${SCHOOL_FEES_ISSUER:-http://127.0.0.1:${WOJIA_PORT:-8000}}"
export SCHOOL_FEES_PUBLIC_URL="${SCHOOL_FEES_PUBLIC_URL:-https://127.0.0.1:$PORT}"
export SCHOOL_FEES_DB="${SCHOOL_FEES_DB:-$state/school_fees.db}"
export SCHOOL_FEES_OPERATOR_TOKEN="${SCHOOL_FEES_OPERATOR_TOKEN:-dev-operator-token}"
export SCHOOL_FEES_CLIENT_ID SCHOOL_FEES_CLIENT_SECRET SCHOOL_FEES_CASHIER_KEY

cd "$here"
exec "$PYTHON" -m school_fees --port "$PORT" --notify-port "$NOTIFY_PORT" --state-dir "$state"
