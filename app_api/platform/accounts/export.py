"""A resident's copy of all their data (PIPL art. 45, the right of access and copy).

The export walks every table on the shared metadata (so a column's tables are included without
the platform importing the column) and takes the rows tied to the account: a column that is a
foreign key to ``app_account.id`` or is named as an owner (``OWNER_COLUMNS``), and the records held
under the resident's ID number (``ID_HASH_COLUMNS``, matched by its lookup hash). Tables that are
tied to an account but left out are listed in ``EXCLUDED`` with the reason; a test walks the models
and fails on a table that is in neither.

Encrypted fields are decrypted for the resident (it is their own data); lookup hashes and
ciphertexts that are not theirs to read (secrets, other people's) are left out. One export runs at a
time per account: a second request while one is being built is refused (``ExportInProgress``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_bytes, decrypt_str
from app_api.core.db import utcnow
from app_api.core.errors import Conflict
from app_api.core.redis import get_redis
from app_api.platform import audit
from app_api.platform.accounts.models import Account

ACCOUNT_TABLE = "app_account"
# Columns that name the account owning (or being the subject of) a row.
OWNER_COLUMNS = frozenset(
    {
        "account_id",
        "resident_id",
        "applicant_id",
        "subject_account_id",
        "payer_id",
        "holder_id",
        "user_id",
        "owner_id",
    }
)
# Columns holding the lookup hash of an ID number: records kept under the resident's ID number.
ID_HASH_COLUMNS = frozenset({"id_number_hash", "holder_id_hash", "subject_hash"})
# Tables tied to an account and deliberately not exported, with the reason shown to the resident.
EXCLUDED: dict[str, str] = {
    "app_audit_event": (
        "审计链是按法律要求保存、不可篡改的操作凭证；其中与您有关的操作已体现在各项业务数据与访问记录中"
    ),
    "app_refresh_token": "登录凭证（令牌）属于安全数据，导出会危及账户安全",
    "app_token_revocation": "登录凭证吊销记录属于安全数据",
    "app_outbox": "系统内部任务队列，只含处理中任务的引用",
    "app_column_setting": "栏目配置，记录的是修改配置的工作人员，不含您的信息",
    "app_station": "代办点公开信息（联系电话为代办点电话），不含您的信息",
    "app_external_column_template": "第三方栏目的消息模板，记录的是审核模板的工作人员，不含您的信息",
    "gov_services_department": "政务部门公开信息，不含您的信息",
    "gov_services_item_version": "事项目录的版本，记录的是编辑目录的工作人员",
    "notices_notice": "公告内容，记录的是发布公告的工作人员",
    "payments_recon_run": "财务对账批次，记录的是发起对账的工作人员",
    "payments_recon_item": "财务对账差异，您的支付订单与退款已在 payments_order / payments_refund 中导出",
    "utilities_bill": (
        "出账单位按户号提供的账单缓存；您绑定的户号见 utilities_binding，已缴账单见 utilities_payment_item"
    ),
    "utilities_biller_notice": "告知出账单位缴费结果的系统消息；缴费记录见 utilities_payment",
}
# Column values never exported: keys for lookups and secrets. An encrypted column is exported as
# its model declares (``app_api.core.crypto.encrypted_column``: the AAD it was encrypted with, and
# whether the plaintext is text, JSON or bytes), or left out for the reason it gives.
SKIP_SUFFIXES = ("_hash", "password", "secret", "_key")
LOCK_TTL_S = 120


class ExcludedTable(BaseModel):
    table: str
    reason: str


class DataExport(BaseModel):
    """个人信息副本: every row tied to the account, table by table, and what was left out and why."""

    account_id: str
    generated_at: str
    tables: dict[str, list[dict[str, Any]]] = Field(description="表名 → 与您有关的记录")
    excluded: list[ExcludedTable] = Field(description="未导出的表及原因")


class ExportInProgress(Conflict):
    code = "accounts.export_in_progress"
    title = "您的数据导出正在进行中，请稍后再试"


def owner_columns(table: sa.Table) -> list[str]:
    """The columns of ``table`` that tie a row to an account."""
    out = []
    for c in table.columns:
        fk_to_account = any(fk.column.table.name == ACCOUNT_TABLE for fk in c.foreign_keys)
        if fk_to_account or c.name in OWNER_COLUMNS or c.name in ID_HASH_COLUMNS:
            out.append(c.name)
    if table.name == ACCOUNT_TABLE:
        out.append("id")
    return out


def _parents(table: sa.Table) -> dict[str, str]:
    """Foreign-key columns of ``table`` to another table's key: {column: parent table}."""
    return {
        c.name: fk.column.table.name
        for c in table.columns
        for fk in c.foreign_keys
        if fk.column.table.name != ACCOUNT_TABLE
    }


def exported_tables() -> dict[str, list[str]]:
    """Every table the export includes, with the columns it matches on: the owner columns of a table
    tied to an account, else ``parent_table.column`` for a table whose rows belong to exported rows
    (an application's events, an order's refunds), followed to any depth."""
    tables: dict[str, list[str]] = {}
    for name, table in sorted(SQLModel.metadata.tables.items()):
        cols = owner_columns(table)
        if cols and name not in EXCLUDED:
            tables[name] = cols
    grew = True
    while grew:
        grew = False
        for name, table in sorted(SQLModel.metadata.tables.items()):
            if name in tables or name in EXCLUDED:
                continue
            links = [f"{parent}.{c}" for c, parent in _parents(table).items() if parent in tables]
            if links:
                tables[name] = links
                grew = True
    return tables


def _plain(column: sa.Column[Any], value: bytes, row: sa.RowMapping) -> Any:
    """The plaintext of an encrypted value, as its column declares; None when it declares nothing
    or is not to be exported, or the value does not open with the declared AAD."""
    info = column.info
    if "aad" not in info or info.get("not_exported"):
        return None
    try:
        aad = str(info["aad"]).format(**row)
        if info.get("form") == "bytes":
            return base64.b64encode(decrypt_bytes(value, aad=aad)).decode()
        text = decrypt_str(value, aad=aad)
        return json.loads(text) if info.get("form") == "json" else text
    except Exception:
        return None


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _row(table: sa.Table, row: sa.Row[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mapping = row._mapping
    for c in table.columns:
        if c.name.endswith(SKIP_SUFFIXES):
            continue
        value = mapping[c.name]
        if isinstance(value, bytes | bytearray | memoryview):
            plain = _plain(c, bytes(value), mapping)
            if plain is not None:
                out[c.name.removesuffix("_enc")] = plain
            continue
        out[c.name] = _value(value)
    return out


def encrypted_columns_not_exported() -> dict[str, str]:
    """``table.column`` -> why, for the encrypted columns of exported tables left out on purpose."""
    return {
        f"{name}.{c.name}": str(c.info["not_exported"])
        for name in exported_tables()
        for c in SQLModel.metadata.tables[name].columns
        if c.info.get("not_exported")
    }


async def build(session: AsyncSession, account: Account) -> dict[str, Any]:
    """All the rows tied to ``account``, table by table, with what was left out and why."""
    data: dict[str, list[dict[str, Any]]] = {}
    keys: dict[str, set[Any]] = {}
    for name, cols in exported_tables().items():
        table = SQLModel.metadata.tables[name]
        conds: list[sa.ColumnElement[bool]] = []
        for c in cols:
            parent, _, column = c.rpartition(".")
            if parent:
                if keys.get(parent):
                    conds.append(table.c[column].in_(keys[parent]))
            elif c in ID_HASH_COLUMNS:
                if account.id_number_hash:
                    conds.append(table.c[c] == account.id_number_hash)
            else:
                conds.append(table.c[c] == account.id)
        if not conds:
            continue
        # Core rows of any table (the session's connection: no ORM objects, no warning)
        conn = await session.connection()
        rows = (await conn.execute(sa.select(table).where(sa.or_(*conds)))).all()
        pk = list(table.primary_key.columns)
        if len(pk) == 1:
            keys[name] = {r._mapping[pk[0].name] for r in rows}
        if rows:
            data[name] = [_row(table, r) for r in rows]
    return {
        "account_id": account.id,
        "generated_at": utcnow().isoformat(),
        "tables": data,
        "excluded": [
            {"table": t, "reason": r}
            for t, r in sorted({**EXCLUDED, **encrypted_columns_not_exported()}.items())
        ],
    }


async def export(session: AsyncSession, *, account_id: str) -> dict[str, Any]:
    """The resident's export, one at a time per account (a concurrent second request is refused),
    audited (``accounts.data_exported``, counts only)."""
    r = await get_redis()
    lock = f"accounts:export:{account_id}"
    if not await r.set(lock, b"1", ex=LOCK_TTL_S, nx=True):
        raise ExportInProgress()
    try:
        account = await session.get(Account, account_id)
        if account is None:
            raise ExportInProgress("未找到账户")
        out = await build(session, account)
        await audit.record(
            session,
            action="accounts.data_exported",
            actor_id=account_id,
            subject_type="app_account",
            subject_id=account_id,
            data={"rows": {t: len(v) for t, v in out["tables"].items()}},
        )
        return out
    finally:
        await r.delete(lock)


def render_html(export: dict[str, Any], table_names: dict[str, str] | None = None) -> str:
    """A readable page of the export: one section per table, one row per record."""
    names = table_names or {}
    e = html.escape
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>我的数据导出</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}</style>",
        "</head><body>",
        f"<h1>我的数据导出</h1><p>生成时间：{e(export['generated_at'])}</p>",
    ]
    for table, rows in export["tables"].items():
        cols = sorted({k for r in rows for k in r})
        parts.append(f"<h2>{e(names.get(table, table))}（{len(rows)} 条）</h2><table><tr>")
        parts.extend(f"<th>{e(c)}</th>" for c in cols)
        parts.append("</tr>")
        for r in rows:
            parts.append("<tr>")
            for c in cols:
                v = r.get(c)
                text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                parts.append(f"<td>{e(text)}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("<h2>未导出的数据及原因</h2><ul>")
    parts.extend(f"<li>{e(x['table'])}：{e(x['reason'])}</li>" for x in export["excluded"])
    parts.append("</ul></body></html>")
    return "".join(parts)


__all__ = ["EXCLUDED", "DataExport", "ExportInProgress", "build", "export", "exported_tables", "render_html"]
