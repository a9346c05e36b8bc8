#!/usr/bin/env bash
# Train the assistant's Rasa model, only when its inputs changed.
#
# 1. Generates the catalogue-dependent training inputs (item lookup table and synonyms, bare-name
#    examples, the jieba user dictionary) from the service catalogue's seed file
#    (bot/tools/gen_catalogue.py).
# 2. Hashes every input (config, domain, data, generated files, pinned requirements) and trains into
#    wojia-<hash>.tar.gz in the model cache, outside the checkout (WOJIA_RASA_MODELS, default
#    ~/.cache/wojia/rasa-models), unless that model already exists: a fresh clone with the same
#    inputs reuses the model instead of training for minutes.
# Prints the model's path on stdout (progress goes to stderr).
#
# Usage:  scripts/rasa-train.sh            # generate, train if needed
#         scripts/rasa-train.sh --force    # train even if the model exists
#         scripts/rasa-train.sh --generate # only regenerate the catalogue-dependent inputs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="$root/bot/rasa"
models="${WOJIA_RASA_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/wojia/rasa-models}"

venv="$("$root/scripts/rasa-env.sh")"
py="$venv/bin/python"

"$py" "$root/bot/tools/gen_catalogue.py" >&2
if [[ "${1:-}" == "--generate" ]]; then
    exit 0
fi

inputs_hash="$(
    cd "$project"
    {
        find config.yml domain.yml data dictionary -type f | LC_ALL=C sort | xargs sha256sum
        (cd "$root" && sha256sum bot/requirements-rasa.txt)  # a relative path: the hash must not depend on where the checkout is
    } | sha256sum | cut -c1-16
)"
model="$models/wojia-$inputs_hash.tar.gz"

if [[ -f "$model" && "${1:-}" != "--force" ]]; then
    echo "rasa-train: inputs unchanged, reusing $(basename "$model")" >&2
    echo "$model"
    exit 0
fi

mkdir -p "$models"
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
echo "rasa-train: training $(basename "$model") (under a minute on 2 quiet cores; load $(load))" >&2
# Wall and CPU time of the training (bot/EVALUATION.md argues the quiet figure from the CPU time:
# the pipeline trains no neural network and runs mostly on one core).
TIMEFORMAT="rasa-train: trained in %0R s wall, %0U s user + %0S s sys CPU"
time (
    cd "$project"
    # Telemetry off: nothing leaves the machine.
    RASA_TELEMETRY_ENABLED=false SQLALCHEMY_SILENCE_UBER_WARNING=1 \
        "$venv/bin/rasa" train --quiet \
        --config config.yml --domain domain.yml --data data \
        --out "$models" --fixed-model-name "wojia-$inputs_hash" >&2
)
echo "rasa-train: load average after training $(load)" >&2
# Keep the newest few models: other checkouts (branches, CI clones) may use an older one.
ls -1t "$models"/wojia-*.tar.gz 2>/dev/null | tail -n +5 | xargs -r rm -f
echo "$model"
