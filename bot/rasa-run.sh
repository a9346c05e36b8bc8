#!/usr/bin/env bash
# Run the assistant's Rasa server on loopback: creates the venv and trains first when needed
# (the model is cached outside the checkout, keyed by its inputs: see scripts/rasa-train.sh).
#
# Usage:  bot/rasa-run.sh                 # foreground; Ctrl-C stops it
# Env:    WOJIA_BOT_RASA_PORT   (5005)
#         WOJIA_BOT_ACTION_URL  (http://127.0.0.1:8000/api/v1/bot/actions: the app's webhook)
#         WOJIA_BOT_ACTION_TOKEN (the app's development token; set both sides in production)
#         WOJIA_BOT_STATE_FILE  (var/rasa.state: what the start is doing, read by the app)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# What this start is doing, for the app: "<phase> <pid>" (the pid stays the same through exec, so
# the file names the Rasa server once it runs; the app answers 503 bot.starting while it is alive
# and not answering yet, and bot.unavailable once it is gone).
state="${WOJIA_BOT_STATE_FILE:-${WOJIA_VAR_DIR:-$root/var}/rasa.state}"
mkdir -p "$(dirname "$state")"
echo "training $$" > "$state"
venv="$("$root/scripts/rasa-env.sh")"
model="$("$root/scripts/rasa-train.sh")"
echo "loading $$" > "$state"

export WOJIA_BOT_ACTION_URL="${WOJIA_BOT_ACTION_URL:-http://127.0.0.1:8000/api/v1/bot/actions}"
export WOJIA_BOT_ACTION_TOKEN="${WOJIA_BOT_ACTION_TOKEN:-dev-bot-action-token}"
export RASA_TELEMETRY_ENABLED=false SQLALCHEMY_SILENCE_UBER_WARNING=1

cd "$root/bot/rasa"
exec "$venv/bin/rasa" run --enable-api -i 127.0.0.1 -p "${WOJIA_BOT_RASA_PORT:-5005}" \
    --model "$model" --endpoints endpoints.yml --credentials credentials.yml
