"""Run the benches and print one table: work, goal, figure, ratio (``make bench``).

Each bench script runs with ``BENCH_JSON=1`` in its environment (the same as its ``--json``): a
bench that supports it prints a final line ``BENCH {"work", "goal", "figure", "ratio", ...}``
(one or more). A bench that prints none (not adopted yet, or it failed) gets a row with "—" and its
script name, and its exit status. Ratio: figure over goal, 1.00 or more meets the goal.

Usage: .venv/bin/python bench/report.py [script.py ...] [--timeout 1200] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# Modules in bench/ that are not benches.
NOT_BENCHES = frozenset({"__init__.py", "_harness.py", "report.py", "hello_app.py", "bot_app.py"})
PREFIX = "BENCH "


def scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHES)


def parse(output: str) -> list[dict[str, Any]]:
    rows = []
    for line in output.splitlines():
        if line.startswith(PREFIX):
            try:
                record = json.loads(line[len(PREFIX) :])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                rows.append(record)
    return rows


def run(script: Path, timeout: float, quiet: bool) -> tuple[list[dict[str, Any]], str]:
    env = {**os.environ, "BENCH_JSON": "1"}
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    if not quiet:
        sys.stdout.write(done.stdout)
        sys.stdout.flush()
    rows = parse(done.stdout)
    note = f"{time.monotonic() - start:.0f} s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        note = f"exit {done.returncode}: {tail[:80]}"
    return rows, note


def table(results: list[tuple[str, list[dict[str, Any]], str]]) -> str:
    lines = [("work", "goal", "figure", "ratio")]
    for name, rows, note in results:
        if not rows:
            lines.append((f"— ({name}: no BENCH line; {note})", "—", "—", "—"))
        for r in rows:
            ratio = r.get("ratio")
            shown = f"{ratio:.2f}" if isinstance(ratio, int | float) else "—"
            lines.append(
                (str(r.get("work", name)), str(r.get("goal", "—")), str(r.get("figure", "—")), shown)
            )
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    out = []
    for n, row in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description="Run the benches and print one table.")
    ap.add_argument("only", nargs="*", help="bench scripts to run (default: every bench/*.py)")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT", 1200)))
    ap.add_argument("--quiet", action="store_true", help="print only the table")
    args = ap.parse_args()
    chosen = [BENCH / Path(s).name for s in args.only] if args.only else scripts()
    results = []
    for script in chosen:
        print(f"== {script.name}", flush=True)
        rows, note = run(script, args.timeout, args.quiet)
        results.append((script.name, rows, note))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
