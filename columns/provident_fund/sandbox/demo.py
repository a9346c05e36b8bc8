"""The development provident-fund center: an account for each demo resident of ``wojia seed``
(the retired ones sealed, one with a housing loan)."""

from __future__ import annotations

from starlette.applications import Starlette

from app_api.platform.demo import RESIDENTS
from columns.provident_fund.config import DEV_CENTER_SECRET
from columns.provident_fund.sandbox.center import FundCenterSandbox, Person


def dev_app() -> Starlette:
    """The development center with an account for each demo resident of ``wojia seed``, for the
    embedded default to mount at ``/sandbox/provident_fund`` (where the default URL points)."""
    center = FundCenterSandbox(DEV_CENTER_SECRET)
    employers = [
        "亳州市人民医院",
        "古井贡酒股份有限公司",
        "亳州市谯城区实验小学",
        "亳州康美中药城",
        "安徽亳州药都农商银行",
    ]
    for n, r in enumerate(RESIDENTS):
        retired = r.birth.year < 1960
        person = center.add_person(
            Person(
                id_number=r.id_number,
                name=r.name,
                account_no=f"34160{n + 1:07d}",
                employer=employers[n % 5],
                base_fen=450_000 + 80_000 * n,
                balance_fen=2_360_000 + 1_150_000 * n,
                months=24 + 17 * n,
                status="封存" if retired else "正常缴存",
            )
        )
        if n == 2:
            person.loans.append(
                {
                    "loan_no": "DK2024000318",
                    "principal_fen": 35_000_000,
                    "outstanding_fen": 31_846_200,
                    "annual_rate": "2.85",
                    "term_months": 300,
                    "monthly_payment_fen": 163_215,
                    "next_due_on": None,
                    "status": "正常还款",
                }
            )
    return center.app
