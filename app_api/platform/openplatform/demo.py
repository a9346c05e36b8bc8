"""Development only: the example third-party column (docs/examples/school_fees) registered for `make run`.

The seed does what an admin does by hand in the example's README, through the same service calls as
the admin API (validation, secret hashing, audit): it registers the column, opens its cashier and
approves its message template, the demo admin as the actor. The credentials the example needs are
written to ``var/school_fees.env`` (mode 0600), which ``docs/examples/school_fees/run.sh`` reads.

Idempotent: with the column registered and the file's credentials still valid it changes nothing.
The client secret is stored hashed, so it is known only when it is made: if the file is missing or no
longer matches, the secret is rotated and the file rewritten (the cashier key is stored encrypted
and is read back, not rotated). Runs only when ``WOJIA_ENVIRONMENT`` is ``development``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import on_commit
from app_api.core.settings import VAR_DIR, get_settings
from app_api.platform.accounts.service import find_by_phone
from app_api.platform.demo import STAFF
from app_api.platform.openplatform import cashier, messages, service
from app_api.platform.openplatform.cashier_models import CashierAccount
from app_api.platform.openplatform.models import ColumnMessageTemplate, ExternalColumn
from app_api.platform.openplatform.schemas import ColumnCreate

# Where docs/examples/school_fees/run.sh serves the example by default.
PUBLIC_URL = "https://127.0.0.1:8443"
NOTIFY_URL = "http://127.0.0.1:8081/cashier/notify"
COLUMN = ColumnCreate(
    name="学费缴纳",
    icon=PUBLIC_URL + "/icon.png",
    category="教育培训",
    url=PUBLIC_URL + "/",
    identity_level=1,
    allowed_scopes=["openid", "phone", "real_name"],
    redirect_uris=[PUBLIC_URL + "/oidc/callback"],
    operator_contact="亳州市第一中学财务室 0558-5550123",
)
SUB_ACCOUNTS = ["school-01"]
# The template the example's back office sends after a refund (README, "Back office").
TEMPLATE_KEY = "tuition_refund"
TEMPLATE_TEXT = "您为$student缴纳的$term学费已退回$amount元，将原路退回支付账户。"
KEYS = ("SCHOOL_FEES_CLIENT_ID", "SCHOOL_FEES_CLIENT_SECRET", "SCHOOL_FEES_CASHIER_KEY")


def credentials_path() -> Path:
    return VAR_DIR / "school_fees.env"


def read_credentials(path: Path) -> dict[str, str]:
    """The file's ``NAME=value`` lines (empty if it is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            out[name.strip()] = value.strip()
    return out


def _write_credentials(path: Path, values: dict[str, str]) -> None:
    """Replace the file atomically; it is created 0600 (it holds secrets), never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# The example column's credentials, written by the development seed. Do not commit.\n")
        f.writelines(f"{k}={values[k]}\n" for k in KEYS)
    os.replace(tmp, path)


async def seed(session: AsyncSession, *, path: Path | None = None) -> str:
    if get_settings().environment != "development":
        return "example column: development only, skipped"
    path = path or credentials_path()
    admin_phone = next(phone for phone, roles, _ in STAFF if "admin" in roles)
    admin = await find_by_phone(session, admin_phone)
    if admin is None:
        return "example column: no demo admin to register it, skipped"
    done: list[str] = []
    column = (await session.exec(select(ExternalColumn).where(ExternalColumn.name == COLUMN.name))).first()
    known = read_credentials(path)
    secret: str | None = None
    if column is None:
        column, secret = await service.register(session, data=COLUMN, actor_id=admin.id)
        done.append("registered")
    elif known.get(KEYS[0]) == column.client_id and service.secret_matches(column, known.get(KEYS[1], "")):
        secret = known[KEYS[1]]
    else:
        column, secret = await service.rotate_client_secret(session, column_id=column.id, actor_id=admin.id)
        done.append("client secret rotated")
    account = await session.get(CashierAccount, column.id)
    if account is None:
        account, _ = await cashier.register(
            session,
            column,
            notify_url=NOTIFY_URL,
            sub_accounts=SUB_ACCOUNTS,
            rotate_secret=False,
            actor_id=admin.id,
        )
        done.append("cashier opened")
    cashier_key = cashier.column_secret(account)
    template = (
        await session.exec(
            select(ColumnMessageTemplate).where(
                ColumnMessageTemplate.column_id == column.id, ColumnMessageTemplate.key == TEMPLATE_KEY
            )
        )
    ).first()
    if template is None:
        template = await messages.propose(session, column, key=TEMPLATE_KEY, text=TEMPLATE_TEXT)
        await messages.decide(
            session, template_id=template.id, approve=True, admin_id=admin.id, note="开发环境示例"
        )
        done.append("template approved")
    assert secret is not None
    values = dict(zip(KEYS, (column.client_id, secret, cashier_key), strict=True))
    if known != values or path.stat().st_mode & 0o077:
        target = path

        async def write() -> None:
            _write_credentials(target, values)

        # Once the secrets are committed: a failed commit leaves no file naming a secret that does
        # not exist (the next seed finds the file missing and rotates).
        on_commit(session, write)
        done.append(f"credentials written to {path}")
    state = "" if column.enabled else " (disabled by an admin: enable it to use the example)"
    return f"example column {COLUMN.name}: {', '.join(done) or 'unchanged'}{state}"
