"""One-tap application throughput on PostgreSQL: applications submitted per second.

Each application does what a resident's tap does, through the column's services in one
transaction per request, as the API would: create the draft, record the consent and pull the
e-certificates through the data center gateway (consent check and access log), check materials,
submit (compare-and-set, timeline event, audit entry, notification through the outbox).
Concurrency is in-process (asyncio tasks sharing the engine's pool), so the figure is per api
process; the embedded job worker delivers the notifications in the same process.

Run: .venv/bin/python bench/gov_services_submit.py [applications] [concurrency]
Needs PostgreSQL at 127.0.0.1:5432 (database ``test`` is used only to create and drop a scratch
database). Figures, not pass/fail.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid

BASE = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SCRATCH = f"wojia_bench_gov_{uuid.uuid4().hex[:8]}"
os.environ["WOJIA_DATABASE_URL"] = BASE.rsplit("/", 1)[0] + f"/{SCRATCH}"
os.environ.setdefault("WOJIA_ENVIRONMENT", "test")
os.environ["WOJIA_JOBS_EMBEDDED"] = "true"
os.environ["WOJIA_LOG_JSON"] = "false"
os.environ.setdefault("WOJIA_VAR_DIR", f"/tmp/{SCRATCH}")

CERTS = (
    ("resident_id_card", "居民身份证"),
    ("household_register", "居民户口簿"),
    ("social_security_card", "社会保障卡"),
)
ITEM = "BZ-MZ-002"  # 高龄津贴申领: every material by e-certificate reference


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(BASE.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _residents(n: int) -> list[str]:
    import datetime as dt

    from app_api.core.crypto import encrypt_str, lookup_hash
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.citizen_id import make
    from app_api.platform.datahub.models import ECertificate, PopulationRecord
    from app_api.platform.datahub.service import id_hash

    ids = []
    async with session_scope() as s:
        for i in range(n):
            id_number = make("341602", dt.date(1940, 1, 1) + dt.timedelta(days=i // 900), i % 900 + 1)
            phone = f"137{i:08d}"
            account = Account(
                phone_hash=lookup_hash(phone, purpose="phone"),
                phone_enc=encrypt_str(phone, aad="phone"),
                identity_level=2,
                real_name_enc=encrypt_str("测试", aad="name"),
                id_number_enc=encrypt_str(id_number, aad="id_number"),
                id_number_hash=id_hash(id_number),
            )
            s.add(account)
            s.add(
                PopulationRecord(
                    id_number_hash=id_hash(id_number),
                    id_number_enc=encrypt_str(id_number, aad="id_number"),
                    name_enc=encrypt_str("测试", aad="name"),
                    gender="男",
                    birth_date=dt.date(1940, 1, 1),
                    address_enc=encrypt_str("安徽省亳州市谯城区", aad="address"),
                )
            )
            for code, title in CERTS:
                s.add(
                    ECertificate(
                        holder_id_hash=id_hash(id_number),
                        cert_type=code,
                        cert_no=f"B{uuid.uuid4().hex[:16]}",
                        title=title,
                        issuer="亳州市公安局",
                        issued_on=dt.date(2016, 1, 1),
                    )
                )
            ids.append(account.id)
    return ids


async def _one_tap(account_id: str) -> float:
    from app_api.core.db import session_scope
    from app_api.platform.accounts.principal import Principal
    from columns.gov_services import applications, prefill

    principal = Principal(id=account_id, roles=("resident",), identity_level=2)
    start = time.perf_counter()
    async with session_scope() as s:
        app, _ = await applications.create_application(
            s, principal=principal, item_code=ITEM, client_key=uuid.uuid4().hex
        )
    async with session_scope() as s:
        app = await applications.owned_application(s, app_id=app.id, principal=principal)
        await prefill.prefill(s, app=app, principal=principal, groups=["certificate"])
    async with session_scope() as s:
        done = await applications.submit(s, app_id=app.id, principal=principal, delivery=None, address=None)
        assert done.status == "submitted"
    return time.perf_counter() - start


async def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    await _pg(f'CREATE DATABASE "{SCRATCH}"')
    try:
        from app_api.wiring.migrate import upgrade

        await asyncio.to_thread(upgrade)
        from app_api.core.db import dispose_engine, session_scope
        from app_api.core.jobs import broker
        from app_api.platform.notify import get_notify_settings  # noqa: F401  (templates registered)
        from columns.gov_services import catalogue_store

        await broker.startup()
        async with session_scope() as s:
            await catalogue_store.seed(s)
        accounts = await _residents(total)
        # Warm-up: connections, caches, first-use imports.
        for a in accounts[:5]:
            await _one_tap(a)
        sem = asyncio.Semaphore(concurrency)

        async def guarded(a: str) -> float:
            async with sem:
                return await _one_tap(a)

        t0, c0 = time.perf_counter(), time.process_time()
        lat = sorted(await asyncio.gather(*[guarded(a) for a in accounts[5:]]))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = len(lat)
        host = BASE.rsplit("@", 1)[-1].rsplit("/", 1)[0]
        print(f"PostgreSQL {host}, {n} one-tap applications, concurrency {concurrency}")
        print(f"throughput {n / wall:.1f} submissions/s (wall {wall:.2f} s)")
        # The machine may be shared: the api process's own CPU per application tells what one core
        # sustains (PostgreSQL's own CPU is not included).
        print(
            f"api process CPU {cpu / n * 1000:.1f} ms per application -> about {n / cpu:.0f} submissions/s "
            f"per api core; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"per application (3 transactions): p50 {statistics.median(lat) * 1000:.1f} ms, "
            f"p95 {lat[int(n * 0.95) - 1] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
        )
        # Let the in-process worker finish delivering the notifications before the database goes.
        await asyncio.sleep(3)
        await broker.shutdown()
        await dispose_engine()
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
