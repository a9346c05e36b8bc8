"""The development billers: three companies (water, power, gas) with the demo households the seed
binds (``columns.utilities.seed``), mounted by the app in development or served as their own process."""

from __future__ import annotations

import datetime as dt

from starlette.applications import Starlette

from columns.utilities.config import DEV_BILLER_SECRET
from columns.utilities.sandbox.biller import BillerSandbox, SandboxBill, sandbox_app


def demo_sandboxes(secret: str) -> dict[str, BillerSandbox]:
    """The development billers with a few demo households (the seed binds them)."""
    today = dt.date.today()
    units = {"water": "吨", "power": "度", "gas": "立方米"}
    out: dict[str, BillerSandbox] = {}
    for n, (code, unit) in enumerate(units.items()):
        s = BillerSandbox(code, secret, unit=unit)
        for i, (holder, address) in enumerate(
            [("张建国", "谯城区薛阁街道光明路18号"), ("李秀英", "涡阳县城关镇向阳路6号")]
        ):
            acct = f"{code[0].upper()}3416{n}{i:05d}"
            s.add_account(
                acct,
                holder,
                address,
                [
                    SandboxBill(
                        f"{acct}-2610",
                        "2026-10",
                        3650 + 1130 * n + 7 * i,
                        today + dt.timedelta(days=2),
                        f"{14 + i} {unit}",
                    ),
                    SandboxBill(
                        f"{acct}-2611",
                        "2026-11",
                        4120 + 980 * n + 5 * i,
                        today + dt.timedelta(days=20),
                        f"{16 + i} {unit}",
                    ),
                ],
            )
        out[code] = s
    return out


def main() -> None:
    """Serve the three development billers as their own process:
    ``python -m columns.utilities.sandbox --port 8701 --secret ... [--demo]``."""
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8701)
    ap.add_argument("--secret", default=DEV_BILLER_SECRET)
    ap.add_argument("--demo", action="store_true", help="with the demo households the seed binds")
    args = ap.parse_args()
    billers = (
        demo_sandboxes(args.secret)
        if args.demo
        else {
            c: BillerSandbox(c, args.secret, unit=u)
            for c, u in (("water", "吨"), ("power", "度"), ("gas", "立方米"))
        }
    )
    uvicorn.run(sandbox_app(billers), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def dev_app() -> Starlette:
    """The development billers with the demo households, for the embedded default to mount at
    ``/sandbox/utilities`` (where the default biller configuration points)."""
    return sandbox_app(demo_sandboxes(DEV_BILLER_SECRET))
