"""Chat turn latency through the app's chat API beside the same turn sent straight to Rasa.

    .venv/bin/python bench/bot_chat_latency.py [--turns 60]

Starts, on loopback: the app (uvicorn, embedded default, a fresh SQLite file) and Rasa with the
trained model (scripts/rasa-train.sh), whose actions call the app's webhook. Then sends the same
messages both ways, interleaved, each conversation fresh every few turns, and prints p50/p95/mean
per path and the overhead of going through the app. Figures, not a pass/fail test.
Goal: overhead at most 20%.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [
    "老年证要带什么材料",
    "办个体工商户营业执照要多少钱",
    "居住证多久能办好",
    "今天天气怎么样",
    "你好",
]
TOKEN = "bench-" + secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script(name: str) -> str:
    r = subprocess.run([str(ROOT / "scripts" / name)], capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def wait(url: str, proc: subprocess.Popen[bytes], what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"{what} did not start")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=60, help="turns per path")
    args = ap.parse_args()

    venv = Path(script("rasa-env.sh"))
    model = script("rasa-train.sh")
    app_port, rasa_port = free_port(), free_port()
    var = tempfile.mkdtemp(prefix="wojia-bench-bot-")
    env = {
        **os.environ,
        "WOJIA_VAR_DIR": var,
        "WOJIA_LOG_JSON": "false",
        "WOJIA_BOT_RASA_URL": f"http://127.0.0.1:{rasa_port}",
        "WOJIA_BOT_ACTION_TOKEN": TOKEN,
        "WOJIA_BOT_ACTION_URL": f"http://127.0.0.1:{app_port}/api/v1/bot/actions",
        "RASA_TELEMETRY_ENABLED": "false",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    }
    for cmd in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [str(ROOT / ".venv/bin/wojia"), *cmd], env=env, cwd=ROOT, check=True, capture_output=True
        )
    logs = Path(var)
    app = subprocess.Popen(
        [str(ROOT / ".venv/bin/uvicorn"), "bench.bot_app:app", "--host", "127.0.0.1", "--port", str(app_port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=(logs / "app.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    rasa = subprocess.Popen(
        [str(venv / "bin/rasa"), "run", "--enable-api", "-i", "127.0.0.1", "-p", str(rasa_port),
         "--model", model, "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"],
        cwd=ROOT / "bot" / "rasa", env=env, stdout=(logs / "rasa.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait(f"http://127.0.0.1:{app_port}/healthz", app, "app")
        wait(f"http://127.0.0.1:{rasa_port}/status", rasa, "rasa")
        via_app: list[float] = []
        direct: list[float] = []
        with httpx.Client(timeout=30) as c:
            # Warm-up both paths (first-call costs: jieba, TF graphs, connection pools).
            for m in MESSAGES:
                c.post(f"http://127.0.0.1:{app_port}/api/v1/bot/messages", json={"message": m})
                c.post(f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook",
                       json={"sender": "warm", "message": m, "metadata": {}})  # fmt: skip
            conv = secrets.token_urlsafe(12)
            for i in range(args.turns):
                if i % len(MESSAGES) == 0:
                    conv = secrets.token_urlsafe(12)
                m = MESSAGES[i % len(MESSAGES)]
                t = time.perf_counter()
                r = c.post(f"http://127.0.0.1:{app_port}/api/v1/bot/messages",
                           json={"message": m, "conversation_id": conv})  # fmt: skip
                via_app.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                t = time.perf_counter()
                r = c.post(f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook",
                           json={"sender": "direct-" + conv, "message": m,
                                 "metadata": {"elderly": False}})  # fmt: skip
                direct.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        print(f"chat turn latency, {args.turns} turns per path, messages: {', '.join(MESSAGES)}")
        for label, xs in (("through the app (POST /api/v1/bot/messages)", via_app),
                          ("straight to Rasa (POST /webhooks/rest/webhook)", direct)):  # fmt: skip
            print(f"  {label:50s} p50 {pct(xs, 50) * 1000:6.1f} ms  p95 {pct(xs, 95) * 1000:6.1f} ms  "
                  f"mean {statistics.mean(xs) * 1000:6.1f} ms")  # fmt: skip
        overhead = statistics.median(via_app) / statistics.median(direct) - 1
        mean_overhead = statistics.mean(via_app) / statistics.mean(direct) - 1
        print(
            f"  overhead of the app: median {overhead * 100:+.1f}%, "
            f"mean {mean_overhead * 100:+.1f}% (goal <= 20%)"
        )
        line = {
            "work": "chat turn through the app vs straight to Rasa (median)",
            "goal": "<= +20%",
            "figure": (
                f"{statistics.median(via_app) * 1000:.1f} vs {statistics.median(direct) * 1000:.1f} ms "
                f"({overhead * 100:+.1f}%)"
            ),
            # Allowed time over the time taken, both relative to Rasa's own.
            "ratio": round(1.2 / (1 + overhead), 3),
        }
        print("BENCH " + json.dumps(line, ensure_ascii=False))
    finally:
        for p in (rasa, app):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
