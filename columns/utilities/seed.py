"""Demo data: the first two demo residents have water, power and gas accounts bound, matching the
households of the development billers (``columns.utilities.sandbox.demo.demo_sandboxes``). Idempotent."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str, mask_name
from app_api.platform.accounts.service import get_or_create_resident
from columns.utilities.models import Binding

# (phone, holder, address) in the order demo_sandboxes() numbers its households
HOUSEHOLDS = [
    ("13800000001", "张建国", "谯城区薛阁街道光明路18号"),
    ("13800000002", "李秀英", "涡阳县城关镇向阳路6号"),
]
BILLERS = ["water", "power", "gas"]


async def seed(session: AsyncSession) -> str:
    added = 0
    for i, (phone, holder, address) in enumerate(HOUSEHOLDS):
        account, _ = await get_or_create_resident(session, phone=phone)
        for n, code in enumerate(BILLERS):
            number = f"{code[0].upper()}3416{n}{i:05d}"
            exists = await session.exec(
                select(Binding.id).where(
                    Binding.account_id == account.id,
                    Binding.biller_code == code,
                    Binding.account_no == number,
                    col(Binding.unbound_at).is_(None),
                )
            )
            if exists.first() is not None:
                continue
            session.add(
                Binding(
                    account_id=account.id,
                    biller_code=code,
                    kind=code,
                    account_no=number,
                    holder_name_enc=encrypt_str(holder, aad="utilities.holder"),
                    holder_masked=mask_name(holder),
                    address_masked=address[:6] + "****",
                    label="家里",
                )
            )
            added += 1
    await session.flush()
    return f"{added} bound accounts"
