"""Internal URLs come from settings: an empty adapter URL is the development sandbox under the public
base URL (resolved when called, so ``WOJIA_PUBLIC_BASE_URL`` moves every sandbox); outside
development it is refused at start-up, and values that cannot work are refused everywhere."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

PROD: dict[str, Any] = {
    "WOJIA_ENVIRONMENT": "production",
    "WOJIA_PUBLIC_BASE_URL": "https://wojia.example.cn",
    "WOJIA_SECRET_KEY": "prod-" + secrets.token_hex(24),
    "WOJIA_DATA_KEYS": "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "WOJIA_LOOKUP_KEY": "prod-" + secrets.token_hex(24),
}


# Not adapter URLs: the test session's own database and Redis.
_KEPT = {"WOJIA_DATABASE_URL", "WOJIA_REDIS_URL", "WOJIA_PUBLIC_BASE_URL"}


def _unconfigure_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every adapter left unconfigured, as these tests assume: other tests' session fixtures (the
    provident-fund center's sandbox, the utilities billers) configure some in the environment for
    the rest of the session, and these tests must not depend on running before them."""
    for name in list(os.environ):
        adapter = name.endswith(("_URL", "_ENDPOINT")) or name == "WOJIA_COLUMN_UTILITIES_BILLERS"
        if adapter and name.startswith("WOJIA_") and name not in _KEPT:
            monkeypatch.delenv(name)


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The platform settings of a production deployment while the test runs."""
    from app_api.core.settings import get_settings

    _unconfigure_adapters(monkeypatch)
    for name, value in PROD.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.fixture
def public_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The platform settings with the api served on port 8150 (as ``make run PORT=8150`` sets it)."""
    from app_api.core.settings import get_settings

    base = "http://127.0.0.1:8150"
    _unconfigure_adapters(monkeypatch)
    monkeypatch.setenv("WOJIA_PUBLIC_BASE_URL", base)
    get_settings.cache_clear()
    try:
        yield base
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_development_adapters_follow_the_public_base_url(public_base: str) -> None:
    from app_api.core.settings import Settings
    from columns.gov_services.config import GovServicesSettings
    from columns.provident_fund.config import ProvidentFundSettings
    from columns.utilities.config import UtilitiesSettings
    from identity.config import IdentitySettings
    from payments.config import PaymentsSettings

    gov = GovServicesSettings()
    assert gov.postal_endpoint == f"{public_base}/sandbox/gov_services/postal"
    assert gov.s3_url == f"{public_base}/sandbox/gov_services/s3"
    assert IdentitySettings().real_person_endpoint == f"{public_base}/sandbox/realperson"
    assert Settings().datahub_endpoint == f"{public_base}/sandbox/datahub"
    assert ProvidentFundSettings().center_endpoint == f"{public_base}/sandbox/provident_fund"
    assert PaymentsSettings().sandbox_base == f"{public_base}/sandbox/payments"
    assert {b.base_url for b in UtilitiesSettings().billers} == {
        f"{public_base}/sandbox/utilities/{kind}" for kind in ("water", "power", "gas")
    }
    # A configured URL wins, without its trailing slash.
    gov = GovServicesSettings(postal_url="https://ems.example.cn/api/", s3_endpoint="http://10.0.0.5:9000")
    assert (gov.postal_endpoint, gov.s3_url) == ("https://ems.example.cn/api", "http://10.0.0.5:9000")


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:8000/sandbox",
        "ftp://files.example.cn",
        "http://",
        "https://a.example.cn/x?y=1",
        "http://h:70000",
    ],
)
def test_urls_that_cannot_work_are_refused(value: str) -> None:
    from app_api.core.settings import Settings
    from columns.gov_services.config import GovServicesSettings
    from columns.provident_fund.config import ProvidentFundSettings
    from identity.config import IdentitySettings
    from payments.config import PaymentsSettings

    with pytest.raises(ValidationError, match="WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL"):
        GovServicesSettings(postal_url=value)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_GOV_SERVICES_S3_ENDPOINT"):
        GovServicesSettings(s3_endpoint=value)
    with pytest.raises(ValidationError, match="WOJIA_IDENTITY_REAL_PERSON_URL"):
        IdentitySettings(real_person_url=value)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL"):
        ProvidentFundSettings(center_url=value)
    with pytest.raises(ValidationError, match="WOJIA_PAYMENTS_SANDBOX_URL"):
        PaymentsSettings(sandbox_url=value)
    with pytest.raises(ValidationError, match="WOJIA_DATAHUB_URL"):
        Settings(_env_file=None, datahub_url=value)
    with pytest.raises(ValidationError, match="WOJIA_PUBLIC_BASE_URL"):
        Settings(_env_file=None, public_base_url=value)


def test_production_refuses_empty_adapter_urls(production: None) -> None:
    from app_api.core.settings import Settings, get_settings
    from columns.gov_services.config import GovServicesSettings
    from columns.provident_fund.config import ProvidentFundSettings
    from columns.utilities.config import UtilitiesSettings
    from identity.config import IdentitySettings

    assert get_settings().environment == "production"
    secret = "prod-" + secrets.token_hex(16)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL must be set"):
        GovServicesSettings(postal_secret=secret)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_GOV_SERVICES_S3_ENDPOINT must be set"):
        GovServicesSettings(
            postal_secret=secret, postal_url="https://ems.example.cn", storage="s3", s3_secret_key=secret
        )
    with pytest.raises(ValidationError, match="WOJIA_IDENTITY_REAL_PERSON_URL must be set"):
        IdentitySettings(verifier="remote", real_person_secret=secret)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL must be set"):
        ProvidentFundSettings(secret=secret)
    with pytest.raises(ValidationError, match="WOJIA_COLUMN_UTILITIES_BILLERS must be set"):
        UtilitiesSettings()
    with pytest.raises(ValidationError, match="WOJIA_DATAHUB_URL must be set"):
        Settings(datahub_adapter="http", datahub_app_key=secret)

    # Configured, they start; an adapter that is not used needs no URL.
    gov = GovServicesSettings(postal_secret=secret, postal_url="https://ems.example.cn/open")
    assert gov.postal_endpoint == "https://ems.example.cn/open"
    assert IdentitySettings().verifier == "local"


def test_production_needs_its_public_base_url() -> None:
    from app_api.core.settings import Settings

    fields: dict[str, Any] = {k.removeprefix("WOJIA_").lower(): v for k, v in PROD.items()}
    fields["metrics_token"] = "prom-" + secrets.token_hex(16)
    assert Settings(_env_file=None, **fields).serving_problems() == []
    del fields["public_base_url"]
    problems = Settings(_env_file=None, **fields).serving_problems()
    assert len(problems) == 1 and problems[0].startswith("WOJIA_PUBLIC_BASE_URL must be set")
