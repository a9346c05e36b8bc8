"""The embedded default end to end in its own process: sandboxes mounted in the app, real SDKs over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("embedded_sandbox_app.py")


@pytest.mark.slow
def test_embedded_default_pays_through_mounted_sandboxes():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "wechat_v2": {"ack": 200, "status": "paid"},
        "wechat_v3": {"ack": 204, "status": "paid"},
        "alipay": {"ack": 200, "status": "paid"},
        "told": 3,
    }
