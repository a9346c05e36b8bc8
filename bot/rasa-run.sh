#!/usr/bin/env bash
# Run the assistant's Rasa server on loopback: creates the venv and trains first when needed.
#
# Usage:  bot/rasa-run.sh                 # foreground; Ctrl-C stops it
# Env:    WOJIA_BOT_RASA_PORT   (5005)
#         WOJIA_BOT_ACTION_URL  (http://127.0.0.1:8000/api/v1/bot/actions: the app's webhook)
#         WOJIA_BOT_ACTION_TOKEN (the app's development token; set both sides in production)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/rasa-env.sh")"
model="$("$root/scripts/rasa-train.sh")"

export WOJIA_BOT_ACTION_URL="${WOJIA_BOT_ACTION_URL:-http://127.0.0.1:8000/api/v1/bot/actions}"
export WOJIA_BOT_ACTION_TOKEN="${WOJIA_BOT_ACTION_TOKEN:-dev-bot-action-token}"
export RASA_TELEMETRY_ENABLED=false SQLALCHEMY_SILENCE_UBER_WARNING=1

cd "$root/bot/rasa"
exec "$venv/bin/rasa" run --enable-api -i 127.0.0.1 -p "${WOJIA_BOT_RASA_PORT:-5005}" \
    --model "$model" --endpoints endpoints.yml --credentials credentials.yml
