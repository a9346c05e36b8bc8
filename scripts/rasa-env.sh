#!/usr/bin/env bash
# Create (idempotently) the assistant's own Python 3.10 environment for Rasa 3.6.
#
# Rasa 3.6.21 needs Python < 3.11 and pins (SQLAlchemy < 1.5, pydantic < 1.10.10, numpy < 1.25,
# tensorflow 2.12) that clash with the app, so it lives in a venv of its own, outside the work tree
# (it is 2.7 GB and must survive fresh clones). The path includes a hash of the pinned requirements,
# so changing bot/requirements-rasa.txt builds a new venv instead of mutating the old one.
#
# Usage:  scripts/rasa-env.sh            # create if needed, print the venv path on stdout
#         scripts/rasa-env.sh --path     # print the path only (no install)
# Env:    WOJIA_RASA_HOME   use this venv path instead of the default
#         WOJIA_RASA_PYTHON use this Python 3.10 interpreter
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/bot/requirements-rasa.txt"
req_hash="$(sha256sum "$req" | cut -c1-12)"
venv="${WOJIA_RASA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/wojia/rasa-venv-$req_hash}"

if [[ "${1:-}" == "--path" ]]; then
    echo "$venv"
    exit 0
fi

stamp="$venv/.wojia-installed"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$req_hash" && -x "$venv/bin/rasa" ]]; then
    echo "$venv"
    exit 0
fi

find_python() {
    if [[ -n "${WOJIA_RASA_PYTHON:-}" ]]; then
        echo "$WOJIA_RASA_PYTHON"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local p
        p="$(pyenv root)/versions/3.10.13/bin/python"
        if [[ -x "$p" ]]; then
            echo "$p"
            return
        fi
        # Any other 3.10.x pyenv has.
        for p in "$(pyenv root)"/versions/3.10.*/bin/python; do
            if [[ -x "$p" ]]; then
                echo "$p"
                return
            fi
        done
    fi
    if command -v python3.10 >/dev/null 2>&1; then
        command -v python3.10
        return
    fi
    return 1
}

if ! py="$(find_python)"; then
    cat >&2 <<'EOF'
rasa-env: no Python 3.10 found.
Rasa 3.6 (the assistant) runs only on Python 3.8-3.10. Install one, for example
    pyenv install 3.10.13          (then re-run this script), or
    apt-get install python3.10 python3.10-venv
or point WOJIA_RASA_PYTHON at a Python 3.10 interpreter.
The rest of the app does not need it; only the assistant will be unavailable.
EOF
    exit 1
fi

ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$ver" != "3.10" ]]; then
    echo "rasa-env: $py is Python $ver; Rasa 3.6 needs 3.10" >&2
    exit 1
fi

echo "rasa-env: creating $venv with $py (about 2.7 GB, a few minutes)" >&2
mkdir -p "$(dirname "$venv")"
rm -f "$stamp"
if command -v uv >/dev/null 2>&1; then
    uv venv --quiet --allow-existing --python "$py" "$venv" >&2
    VIRTUAL_ENV="$venv" uv pip install --quiet --python "$venv/bin/python" -r "$req" >&2
else
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -r "$req" >&2
fi
"$venv/bin/python" -c 'import rasa, jieba' >&2
echo "$req_hash" > "$stamp"
echo "rasa-env: ready" >&2
echo "$venv"
