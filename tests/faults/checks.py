"""What every scenario asserts, counted: acknowledged writes present, side effects not doubled, the
paid orders' columns and billers told in time, outage answers, logged-out tokens, the audit chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.harness import Cluster
from tests.faults.load import Call, Load

TOLD_WITHIN_S = 60.0
OUTAGE_ANSWER_S = 1.0
RECOVERY_GRACE_S = 2.0


@dataclass
class Window:
    """When a fault was in force (monotonic seconds)."""

    fault_at: float
    recover_at: float = 0.0  # restoring began (the service is being started again)
    recovered_at: float = 0.0  # the service is back (the 60 s for telling everyone start here)
    # The api process itself was down (stopping, then starting): the outage window runs until it
    # answers again, a refused connection is acceptable in it, and a success may be slow (draining).
    api_down: bool = False
    # An api process was killed: the requests it was serving may get no answer.
    inflight_lost_ok: bool = False


@dataclass
class Report:
    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        self.counts[key] = value

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def show(self) -> str:
        lines = [f"===== fault scenario: {self.name}"]
        lines += [f"  {k:<46} {v}" for k, v in self.counts.items()]
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  no problem found"]
        return "\n".join(lines)


def _ok_outage_answer(c: Call) -> bool:
    return (
        c.status == 503
        and c.code == "app.unavailable"
        and c.content_type.startswith("application/problem+json")
    )


def _shed(c: Call) -> bool:
    """Load shedding's answer (503 app.overloaded, "come back"): the platform protecting its latency
    on a busy machine, not a fault's error; counted apart."""
    return c.status == 503 and c.code == "app.overloaded"


def latency_before(report: Report, load: Load, w: Window) -> None:
    """How fast the loaded machine answers without a fault (context for the 1 s figure)."""
    times = sorted(
        c.seconds for c in load.calls if c.ended < w.fault_at and c.status is not None and c.label != "notify"
    )
    if times:
        report.add(
            "answer time before the fault p50/p95/max (s)",
            f"{times[len(times) // 2]:.2f} / {times[int(len(times) * 0.95)]:.2f} / {times[-1]:.2f}",
        )


def outage_answers(report: Report, load: Load, w: Window) -> None:
    """Every request started while the fault was in force: answered within 1 s, and an error only as
    503 problem+json ``app.unavailable`` (never a 500); a refused connection only while the api
    itself is down (then the window runs until the api answers again)."""
    end = w.recovered_at if w.api_down else w.recover_at
    during = [
        c
        for c in load.calls
        if w.fault_at <= c.started < end and c.label != "notify" and not c.retry_found_done
    ]
    slow = [
        c
        for c in during
        if c.status is not None and c.seconds > OUTAGE_ANSWER_S and (c.status >= 400 or not w.api_down)
    ]
    unavailable = [c for c in during if c.status is not None and _ok_outage_answer(c)]
    success = [c for c in during if c.status is not None and c.status < 400]
    shed = [c for c in during if _shed(c)]
    wrong = [
        c
        for c in during
        if c.status is not None and c.status >= 400 and not _ok_outage_answer(c) and not _shed(c)
    ]
    no_answer = [c for c in during if c.status is None]
    hung = [c for c in no_answer if c.seconds > OUTAGE_ANSWER_S]
    report.add("requests during the outage", len(during))
    report.add("  answered 503 app.unavailable", len(unavailable))
    report.add("  answered 503 app.overloaded (shed)", len(shed))
    report.add("  answered 2xx/3xx (did not need the failed part)", len(success))
    report.add("  answered otherwise (500, other 4xx/5xx)", len(wrong))
    report.add("  answered later than 1 s", len(slow))
    report.add("  no answer (connection refused/reset)", len(no_answer))
    if during:
        report.add("  slowest answer (s)", round(max(c.seconds for c in during), 3))
    if slow:
        worst = sorted(slow, key=lambda c: -c.seconds)[:5]
        report.fail(
            f"{len(slow)} outage answers took longer than 1 s: "
            + ", ".join(f"{c.label} {c.status} {c.code} {c.seconds:.2f}s ({c.request_id})" for c in worst)
        )
    if wrong:
        kinds = Counter(f"{c.label} {c.status} {c.code}" for c in wrong)
        report.fail(f"{len(wrong)} outage answers were not 503 app.unavailable: {dict(kinds.most_common(8))}")
    report.add("  no answer after more than 1 s (api going down)", len(hung))
    if no_answer and not w.api_down:
        kinds = Counter(f"{c.label} {(c.error or '')[:60]}" for c in no_answer)
        report.fail(
            f"{len(no_answer)} requests got no answer while the api was up: {dict(kinds.most_common(5))}"
        )


def answers_outside(report: Report, load: Load, w: Window, *, graceful: bool = False) -> None:
    """Before the fault and from 2 s after recovery nothing is answered with a 5xx or left without an
    answer. Requests in flight when the fault struck may be answered 503 app.unavailable, or (an
    api process killed) get no answer; with ``graceful`` (SIGTERM) they must finish normally."""
    after = w.recovered_at + RECOVERY_GRACE_S
    calls = [c for c in load.calls if c.label != "notify"]
    before = [c for c in calls if c.started < w.fault_at and c.ended < w.fault_at]
    inflight = [c for c in calls if c.started < w.fault_at <= c.ended]
    later = [c for c in calls if c.started >= after]
    report.add("requests before the fault", len(before))
    report.add("requests in flight when the fault struck", len(inflight))
    report.add(f"requests from {RECOVERY_GRACE_S:.0f} s after recovery", len(later))
    report.add("  of these shed (503 app.overloaded)", sum(1 for c in before + later if _shed(c)))
    for name, group in (("before the fault", before), ("after recovery", later)):
        bad = [c for c in group if c.status is not None and c.status >= 500 and not _shed(c)]
        lost = [c for c in group if c.status is None]
        if bad:
            kinds = Counter(f"{c.label} {c.status} {c.code}" for c in bad)
            report.fail(
                f"{len(bad)} 5xx answers {name}: {dict(kinds.most_common(8))}"
                f" (request ids {[c.request_id for c in bad[:3]]})"
            )
        if lost:
            kinds = Counter(f"{c.label} {(c.error or '')[:60]}" for c in lost)
            report.fail(f"{len(lost)} requests without an answer {name}: {dict(kinds.most_common(5))}")
    # While the dependency comes back (PostgreSQL replaying its WAL, Redis loading): 503
    # app.unavailable is right, a 500 is not (PostgreSQL's "starting up" refusal once was one).
    recovering = [
        c
        for c in calls
        if (w.recovered_at if w.api_down else w.recover_at) <= c.started < after
        and c.status is not None
        and c.status >= 500
        and not _ok_outage_answer(c)
        and not _shed(c)
    ]
    report.add("  5xx other than 503 while recovering", len(recovering))
    if recovering:
        kinds = Counter(f"{c.label} {c.status} {c.code}" for c in recovering)
        report.fail(
            f"{len(recovering)} answers while recovering were 5xx but not 503 app.unavailable:"
            f" {dict(kinds.most_common(8))} (request ids {[c.request_id for c in recovering[:3]]})"
        )
    inflight_bad = [
        c
        for c in inflight
        if (c.status is None and (graceful or not w.inflight_lost_ok))
        or (
            c.status is not None
            and c.status >= 500
            and not _shed(c)
            and (graceful or not _ok_outage_answer(c))
        )
    ]
    report.add("  in flight and answered wrongly", len(inflight_bad))
    if inflight_bad:
        kinds = Counter(f"{c.label} {c.status} {c.code} {(c.error or '')[:50]}" for c in inflight_bad)
        report.fail(
            f"{len(inflight_bad)} requests in flight at the fault answered wrongly: {dict(kinds.most_common(6))}"
        )


async def provider_acked(cluster: Cluster) -> set[str]:
    """out_trade_no of every payment notification the merchant acknowledged (first try or resent)."""
    data = await cluster.sandbox("GET", "/_faults/acked")
    return {label.split(":", 1)[1] for label in data["acked"] if label.startswith("pay:")}


async def _state(cluster: Cluster, load: Load) -> dict[str, Any]:
    otns = [*load.acked.bills, *load.acked.fees]
    orders = await cluster.query(
        "SELECT out_trade_no, id, status, column_notified_at FROM payments_order WHERE out_trade_no = ANY($1)",
        otns,
    )
    notices = await cluster.query(
        "SELECT p.out_trade_no, n.status, n.bill_no, n.attempts, n.last_error, n.next_attempt_at, n.lease_until"
        " FROM utilities_biller_notice n"
        " JOIN utilities_payment_item i ON i.id = n.item_id JOIN utilities_payment p ON p.id = i.payment_id"
        " WHERE p.out_trade_no = ANY($1)",
        otns,
    )
    posted = (await cluster.sandbox("GET", "/billers/water/_sandbox/payments"))["payments"]
    return {
        "orders": {r["out_trade_no"]: r for r in orders},
        "notices": notices,
        "posted": posted,
        "acked": await provider_acked(cluster),
    }


def _untold(load: Load, st: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(acknowledged notifications whose order is not paid, paid orders whose column was not told,
    paid bills the biller has not heard of)."""
    acked = (load.acked.notified | st["acked"]) & (set(load.acked.bills) | set(load.acked.fees))
    orders = st["orders"]
    not_paid = [
        o
        for o in acked
        if o not in orders or orders[o]["status"] not in ("paid", "partially_refunded", "refunded")
    ]
    paid = [o for o, r in orders.items() if r["status"] in ("paid", "partially_refunded", "refunded")]
    not_told = [o for o in paid if orders[o]["column_notified_at"] is None]
    posted_bills = {p["bill_no"] for p in st["posted"]}
    biller_untold = [o for o in paid if o in load.acked.bills and load.acked.bills[o] not in posted_bills]
    return not_paid, not_told, biller_untold


async def wait_told(report: Report, cluster: Cluster, load: Load, w: Window) -> None:
    """Every acknowledged payment credited, its column told and its biller told, within 60 s of
    recovery (measured from ``recovered_at``)."""
    deadline = w.recovered_at + TOLD_WITHIN_S
    while True:
        st = await _state(cluster, load)
        not_paid, not_told, biller_untold = _untold(load, st)
        if not (not_paid or not_told or biller_untold) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    report.add("all told after recovery (s)", round(time.monotonic() - w.recovered_at, 1))
    report.add(
        "payment notifications acknowledged (bills, fees)",
        f"{len((load.acked.notified | st['acked']) & set(load.acked.bills))}, "
        f"{len((load.acked.notified | st['acked']) & set(load.acked.fees))}",
    )
    report.add("  of which not credited", len(not_paid))
    report.add("paid orders", sum(1 for r in st["orders"].values() if r["status"] == "paid"))
    report.add("  column not told within 60 s", len(not_told))
    report.add("  biller not told within 60 s", len(biller_untold))
    if not_paid:
        report.fail(
            f"{len(not_paid)} acknowledged payment notifications not in the ledger: {sorted(not_paid)[:5]}"
        )
    if not_told:
        report.fail(
            f"{len(not_told)} paid orders whose column was not told within 60 s: {sorted(not_told)[:5]}"
        )
    if biller_untold:
        notices = {r["out_trade_no"]: r for r in st["notices"]}
        report.fail(
            f"{len(biller_untold)} paid bills the biller did not hear of within 60 s: "
            + "; ".join(
                f"{o}: notice "
                + (
                    f"{n['status']} attempts={n['attempts']} next={n['next_attempt_at']:%H:%M:%S}"
                    f" lease={n['lease_until'] and n['lease_until'].strftime('%H:%M:%S')} error={n['last_error']}"
                    if (n := notices.get(o))
                    else "missing"
                )
                for o in sorted(biller_untold)[:5]
            )
        )


async def writes_kept(report: Report, cluster: Cluster, load: Load) -> None:
    """Every write the api acknowledged (2xx) is in the database."""
    a = load.acked
    have = {
        "bindings": {
            r["id"]
            for r in await cluster.query(
                "SELECT id FROM utilities_binding WHERE id = ANY($1)", list(a.bindings)
            )
        },
        "payments": {
            r["id"]
            for r in await cluster.query(
                "SELECT id FROM utilities_payment WHERE id = ANY($1)", list(a.payments)
            )
        },
        "applications": {
            r["id"]
            for r in await cluster.query(
                "SELECT id FROM gov_services_application WHERE id = ANY($1)", list(a.applications)
            )
        },
        "submitted": {
            r["id"]
            for r in await cluster.query(
                "SELECT id FROM gov_services_application WHERE id = ANY($1) AND status <> 'draft'",
                list(a.submitted),
            )
        },
        "accounts": {
            r["id"]
            for r in await cluster.query("SELECT id FROM app_account WHERE id = ANY($1)", list(a.accounts))
        },
    }
    wanted = {
        "bindings": set(a.bindings),
        "payments": set(a.payments),
        "applications": a.applications,
        "submitted": a.submitted,
        "accounts": set(a.accounts),
    }
    lost_total = 0
    for kind, ids in wanted.items():
        lost = ids - have[kind]
        lost_total += len(lost)
        report.add(f"acknowledged {kind}", len(ids))
        if lost:
            report.fail(f"{len(lost)} acknowledged {kind} missing from the database: {sorted(lost)[:5]}")
    report.add("acknowledged writes lost", lost_total)


async def not_doubled(report: Report, cluster: Cluster, load: Load) -> None:
    """No side effect twice: the ledger credits each order once, each bill is marked paid by one
    payment and posted to the biller once (one receipt), one message per paid payment, one SMS per
    message."""
    otns = list(load.acked.bills)
    credited = await cluster.query(
        "SELECT o.out_trade_no, count(*) AS n FROM payments_event e JOIN payments_order o ON o.id = e.order_id"
        " WHERE o.out_trade_no = ANY($1) AND e.to_status = 'paid' GROUP BY o.out_trade_no",
        [*otns, *load.acked.fees],
    )
    twice_credited = [r["out_trade_no"] for r in credited if r["n"] > 1]
    notices = await cluster.query(
        "SELECT n.bill_no, count(*) AS n FROM utilities_biller_notice n JOIN utilities_payment_item i ON i.id = n.item_id"
        " JOIN utilities_payment p ON p.id = i.payment_id WHERE p.out_trade_no = ANY($1) GROUP BY n.bill_no",
        otns,
    )
    twice_noticed = [r["bill_no"] for r in notices if r["n"] > 1]
    bills = set(load.acked.bills.values())
    posted = [
        p
        for p in (await cluster.sandbox("GET", "/billers/water/_sandbox/payments"))["payments"]
        if p["bill_no"] in bills
    ]
    receipts = Counter(p["bill_no"] for p in posted)
    twice_posted = [b for b, n in receipts.items() if n > 1]
    reposted = sum(p["times_posted"] - 1 for p in posted)
    accounts = load.acked.accounts
    ids = list(accounts)
    paid_per_account = {
        r["account_id"]: r["n"]
        for r in await cluster.query(
            "SELECT account_id, count(*) AS n FROM utilities_payment WHERE account_id = ANY($1) AND status = 'paid'"
            " GROUP BY account_id",
            ids,
        )
    }
    messages = {
        r["account_id"]: r["n"]
        for r in await cluster.query(
            "SELECT account_id, count(*) AS n FROM app_notification WHERE account_id = ANY($1)"
            " AND template = 'utilities.paid' GROUP BY account_id",
            ids,
        )
    }
    messages_doubled = [a for a, n in messages.items() if n > paid_per_account.get(a, 0)]
    submitted_per_account = {
        r["applicant_id"]: r["n"]
        for r in await cluster.query(
            "SELECT applicant_id, count(*) AS n FROM gov_services_application WHERE applicant_id = ANY($1)"
            " AND status <> 'draft' GROUP BY applicant_id",
            ids,
        )
    }
    for r in await cluster.query(
        "SELECT account_id, count(*) AS n FROM app_notification WHERE account_id = ANY($1)"
        " AND template = 'gov.submitted' GROUP BY account_id",
        ids,
    ):
        if r["n"] > submitted_per_account.get(r["account_id"], 0):
            messages_doubled.append(r["account_id"])
    sent = await cluster.query(
        "SELECT t.notification_id, count(*) AS n FROM app_notification_attempt t JOIN app_notification m"
        " ON m.id = t.notification_id WHERE m.account_id = ANY($1) AND t.ok GROUP BY t.notification_id",
        ids,
    )
    sent_twice = [r["notification_id"] for r in sent if r["n"] > 1]
    # The SMS sandbox's inbox (in Redis: a wipe empties it, so this can only find too many).
    sms_doubled = []
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as c:
        for account_id, phone in accounts.items():
            got = await c.get("/api/v1/dev/sms", params={"phone": phone})
            if got.status_code != 200:
                continue
            paid_sms = [m for m in got.json()["messages"] if "成功缴纳" in m["text"]]
            if len(paid_sms) > paid_per_account.get(account_id, 0):
                sms_doubled.append(phone)
    report.add("orders credited more than once", len(twice_credited))
    report.add("bills with more than one biller notice", len(twice_noticed))
    report.add("bills posted to the biller with >1 receipt", len(twice_posted))
    report.add("biller re-posts answered 'duplicate' (idempotent)", reposted)
    report.add("residents with more messages than payments/submissions", len(messages_doubled))
    report.add("messages sent more than once", len(sent_twice))
    report.add("residents with more paid SMS than payments", len(sms_doubled))
    doubled = (
        len(twice_credited)
        + len(twice_noticed)
        + len(twice_posted)
        + len(messages_doubled)
        + len(sent_twice)
        + len(sms_doubled)
    )
    report.add("side effects doubled", doubled)
    if doubled:
        report.fail(
            "doubled side effects: "
            + json.dumps(
                {
                    "credited": twice_credited[:3],
                    "notices": twice_noticed[:3],
                    "posted": twice_posted[:3],
                    "messages": messages_doubled[:3],
                    "sent": sent_twice[:3],
                    "sms": sms_doubled[:3],
                }
            )
        )


async def tokens_refused(report: Report, cluster: Cluster, load: Load) -> None:
    tokens = load.acked.logged_out
    accepted = []
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=10) as c:
        for t in tokens:
            r = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {t}"})
            if r.status_code != 401:
                accepted.append(r.status_code)
    report.add("logged-out tokens", len(tokens))
    report.add("  still accepted", len(accepted))
    if accepted:
        report.fail(f"{len(accepted)} logged-out tokens were not refused with 401: {Counter(accepted)}")


async def audit_intact(report: Report, cluster: Cluster) -> None:
    r = await asyncio.to_thread(cluster.cli, "audit", "verify", check=False)
    report.add(
        "audit verify",
        (r.stdout + r.stderr).strip().splitlines()[-1] if (r.stdout + r.stderr).strip() else r.returncode,
    )
    if r.returncode != 0:
        report.fail(f"wojia audit verify exited {r.returncode}: {r.stdout}{r.stderr}")


async def load_summary(report: Report, load: Load) -> None:
    report.add("residents completed", load.residents_done)
    report.add("requests sent", len(load.calls))
    report.add("code requests refused 429 after a failed try", load.cooldowns_left)
    report.add("code requests answered 202, no SMS in the inbox", load.codes_missing)
    report.add("binds retried after a lost answer, found done (409)", load.answers_lost_then_conflict)
    report.add("logouts answered 503 but done (401 on the retry)", load.logouts_done_unacknowledged)
    report.add("logins with the code just received, refused", dict(load.logins_refused))
    if load.errors:
        report.add("unexpected answers", len(load.errors))
        report.fail(f"unexpected answers during the load: {load.errors[:5]}")


async def everything(report: Report, cluster: Cluster, load: Load, w: Window) -> None:
    await load_summary(report, load)
    await wait_told(report, cluster, load, w)
    await writes_kept(report, cluster, load)
    await not_doubled(report, cluster, load)
    await tokens_refused(report, cluster, load)
    await audit_intact(report, cluster)


async def redis_aftermath(
    report: Report, cluster: Cluster, requests: int = 80, concurrency: int = 16
) -> None:
    """Long after Redis came back, a burst of requests that need Redis: connections each api process
    had pooled to the killed Redis must not turn into 503s now (each is used once, eventually)."""
    probe = Load(cluster, actors=0)
    async with httpx.AsyncClient(base_url=cluster.api_url, timeout=15) as c:
        phone, headers = await probe.login(c)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                if i % 2:
                    await probe.call(c, "GET", "/api/v1/me", "me", headers=headers)
                else:
                    await probe.call(c, "GET", "/api/v1/dev/sms", "sms-inbox", params={"phone": phone})

        await asyncio.gather(*(one(i) for i in range(requests)))
    calls = [c for c in probe.calls if c.label in ("me", "sms-inbox")]
    bad = [c for c in calls if c.status != 200 and not _shed(c)]
    report.add("burst after recovery (needs Redis)", len(calls))
    report.add("  not answered 200", len(bad))
    if bad:
        kinds = Counter(f"{c.label} {c.status} {c.code}" for c in bad)
        report.fail(
            f"{len(bad)} of {len(calls)} requests long after Redis came back failed: {dict(kinds)}"
            f" (request ids {[c.request_id for c in bad[:3]]})"
        )
