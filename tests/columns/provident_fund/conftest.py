from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from columns.provident_fund.sandbox.center import FundCenterSandbox
from payments.sandbox.common import serve_in_thread


@pytest.fixture(scope="session")
def center() -> Iterator[FundCenterSandbox]:
    from columns.provident_fund.config import get_config

    secret = "test-center-" + secrets.token_hex(4)
    sandbox = FundCenterSandbox(secret)
    server = serve_in_thread(sandbox.app)
    os.environ["WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL"] = server.url
    os.environ["WOJIA_COLUMN_PROVIDENT_FUND_SECRET"] = secret
    get_config.cache_clear()
    yield sandbox
    server.stop()
