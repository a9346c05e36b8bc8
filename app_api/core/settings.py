"""Platform settings: one pydantic-settings class, prefix ``WOJIA_``.

Packages and columns own their own settings classes (``payments/config.py``,
``columns/<slug>/config.py``) with their own prefixes, built the same way through
:class:`WojiaSettings`, so that a third-party column never edits this file.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]
# Local state for the embedded default (SQLite file, uploads); WOJIA_VAR_DIR moves it.
VAR_DIR = Path(os.environ.get("WOJIA_VAR_DIR") or ROOT / "var")

# A browser origin: scheme, host, optional port, nothing else.
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?")
# A base URL an adapter calls: an origin and an optional path, no query or fragment.
_BASE_URL = re.compile(r"https?://(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(/[^\s?#]*)?")
DEV_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
MIN_METRICS_TOKEN = 16

# Development secrets: accepted only when environment == "development" (or "test").
DEV_SECRET_KEY = "dev-secret-key-change-me-0123456789abcdef"
# 32 bytes, urlsafe base64: the development data-encryption key.
DEV_DATA_KEY = "ZGV2LWRhdGEta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE="


def check_base_url(name: str, value: str, *, empty_ok: bool = True) -> str:
    """``value`` as a base URL (no trailing slash), or ValueError naming the setting ``name``.

    Empty stays empty when ``empty_ok`` (an adapter URL left empty: the development sandbox).
    """
    value = value.strip()
    if not value and empty_ok:
        return ""
    match = _BASE_URL.fullmatch(value)
    port = match.group(2) if match else None
    if match is None or (port is not None and not 0 < int(port[1:]) < 65536):
        raise ValueError(f"{name}: {value!r} is not a base URL like https://host.example.cn[:port][/path]")
    return value.rstrip("/")


def adapter_url(name: str, value: str, sandbox_path: str, settings: Settings | None = None) -> str:
    """Where an adapter calls: ``value`` when set, else (development and test only) the loopback
    sandbox served by the api under the public base URL, resolved now so that
    ``WOJIA_PUBLIC_BASE_URL`` (``make run`` sets it from ``PORT``) moves every sandbox with it.

    Settings refuse an empty adapter URL outside development (:func:`refuse_empty_url`), so this
    never points a deployment at a sandbox.
    """
    if value:
        return value.rstrip("/")
    settings = settings or get_settings()
    if not settings.is_dev:
        raise RuntimeError(f"{name} is not set (refused at start-up outside development)")
    return settings.public_base_url + sandbox_path


def refuse_empty_url(environment: str, name: str, value: str) -> None:
    """Outside development an adapter URL must be configured: empty means "the sandbox"."""
    if not value and environment not in {"development", "test"}:
        raise ValueError(
            f"{name} must be set when environment={environment} (empty means the development sandbox)"
        )


class StartupRefused(RuntimeError):
    """The settings are unsafe to serve the api with (see ``Settings.serving_problems``)."""


class WojiaSettings(BaseSettings):
    """Base for every settings class in the project: refuses development secrets in production."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    def refuse_dev_secrets(self, environment: str, secrets: dict[str, tuple[SecretStr | None, str]]) -> None:
        if environment in {"development", "test"}:
            return
        for name, (value, dev_value) in secrets.items():
            if value is None or value.get_secret_value() == dev_value:
                raise ValueError(f"{name} must be set to a real secret when environment={environment}")


class Settings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "test", "staging", "production"] = "development"
    city_name: str = "亳州"
    database_url: str = f"sqlite+aiosqlite:///{VAR_DIR / 'wojia.db'}"
    # "memory://" is the in-process stand-in (fakeredis); anything else is a real Redis URL.
    redis_url: str = "memory://"
    # Where residents, providers and the api's own loopback sandboxes reach this api (no trailing
    # slash). ``make run`` and ``wojia serve`` set it from the port they serve on; required outside
    # development (serving refuses the loopback default).
    public_base_url: str = DEV_PUBLIC_BASE_URL

    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # Data-encryption keys, newest first: "kid:base64key,kid:base64key". The first encrypts;
    # every listed key decrypts, which is how a key is rotated.
    data_keys: SecretStr = SecretStr(f"k1:{DEV_DATA_KEY}")
    # Keyed-hash secret for lookups of encrypted values (ID numbers, phones).
    lookup_key: SecretStr = SecretStr(DEV_SECRET_KEY + "-lookup")

    # Bearer token Prometheus sends to /metrics (scrape config ``authorization``). Required outside
    # development (the api refuses to start without it); unset in development, /metrics is open.
    metrics_token: SecretStr | None = None

    # /docs, /redoc and /openapi.json: served in development and test unless turned off, elsewhere
    # only when turned on.
    docs_enabled: bool | None = None
    # Browser origins allowed to call the API from another origin, comma-separated
    # ("https://a.example,https://b.example"). Empty: no CORS headers at all (the apps are native
    # or mini programs; the staff console is same-origin).
    cors_origins: str = ""

    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600

    # Login codes. The gateway itself (provider, templates, keys) is configured with WOJIA_SMS_*
    # in app_api.platform.sms.settings.
    sms_code_ttl_s: int = Field(default=300, ge=60, le=3600)
    sms_resend_cooldown_s: int = Field(default=60, ge=0, le=3600)  # 0: no cooldown
    sms_max_wrong: int = Field(default=5, ge=1, le=20)
    sms_lock_s: int = Field(default=15 * 60, ge=1)
    sms_per_phone_per_day: int = Field(default=10, ge=1)
    sms_per_ip_per_hour: int = Field(default=30, ge=1)

    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024

    # Load shedding (app_api.core.shedding): requests one api process serves at a time; beyond it
    # ordinary requests get 503 app.overloaded at once. Payment notifications, health checks and
    # logins may use the reserve on top. 0 turns shedding off.
    # 16: ~0.15 s of queued CPU work for a typical read (the bills list, ~10 ms per request per worker
    # on the 2-core machine; its throughput stops growing at 8 concurrent requests over both
    # workers), still 80 req/s per worker for requests waiting 0.2 s on an external system. At 4x
    # load bench/overload.py measured accepted p99 0.25-0.7 s with 16, 1.2-4.6 s with 32.
    max_in_flight: int = Field(default=16, ge=0, le=10_000)
    in_flight_priority_reserve: int = Field(default=16, ge=0, le=10_000)
    shed_retry_after_s: int = Field(default=2, ge=1, le=300)
    # ... and while the event loop runs this late (a backlog). Unset: 200 ms, but not checked in
    # development and test (a test's synchronous work would shed the next request); 0: not checked.
    shed_loop_lag_ms: int | None = Field(default=None, ge=0, le=60_000)

    # Jobs: embedded runs the worker in the api process (in-memory broker).
    jobs_embedded: bool | None = None

    datahub_adapter: Literal["local", "http"] = "local"
    # The data exchange's base URL (``datahub_adapter = "http"``). Empty: the development sandbox
    # under the public base URL (``datahub_endpoint``); required outside development.
    datahub_url: str = ""
    datahub_app_key: SecretStr = SecretStr("dev-datahub-key")

    http_timeout_s: float = 10.0
    log_json: bool = True
    column_strict: bool | None = Field(
        default=None, description="Stop start-up on a broken column (default: outside development)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.refuse_dev_secrets(
            self.environment,
            {
                "WOJIA_SECRET_KEY": (self.secret_key, DEV_SECRET_KEY),
                "WOJIA_DATA_KEYS": (self.data_keys, f"k1:{DEV_DATA_KEY}"),
                "WOJIA_LOOKUP_KEY": (self.lookup_key, DEV_SECRET_KEY + "-lookup"),
            },
        )
        if self.datahub_adapter == "http":
            refuse_empty_url(self.environment, "WOJIA_DATAHUB_URL", self.datahub_url)
        return self

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        return check_base_url("WOJIA_PUBLIC_BASE_URL", value, empty_ok=False)

    @field_validator("datahub_url")
    @classmethod
    def _datahub_url(cls, value: str) -> str:
        return check_base_url("WOJIA_DATAHUB_URL", value)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"WOJIA_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.cn"
                )
        return value

    def serving_problems(self) -> list[str]:
        """Why the api must not start with these settings (empty: it may).

        Checked by ``create_app`` and ``wojia serve``; development and test stay open as they are.
        """
        if self.is_dev:
            return []
        problems = []
        token = self.metrics_token.get_secret_value() if self.metrics_token else ""
        if len(token) < MIN_METRICS_TOKEN:
            problems.append(
                f"WOJIA_METRICS_TOKEN must be set (at least {MIN_METRICS_TOKEN} characters) when "
                f"environment={self.environment}: /metrics is refused without it; Prometheus sends "
                "it as a bearer token"
            )
        if self.public_base_url == DEV_PUBLIC_BASE_URL:
            problems.append(
                f"WOJIA_PUBLIC_BASE_URL must be set when environment={self.environment}: providers' "
                "notifications and links residents follow are built from it"
            )
        if "*" in self.cors_allowed_origins:
            problems.append(
                f"WOJIA_CORS_ORIGINS may not be '*' when environment={self.environment}: list the origins"
            )
        return problems

    @property
    def datahub_endpoint(self) -> str:
        return adapter_url("WOJIA_DATAHUB_URL", self.datahub_url, "/sandbox/datahub", self)

    @property
    def cors_allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def serve_docs(self) -> bool:
        return self.is_dev if self.docs_enabled is None else self.docs_enabled

    @property
    def is_dev(self) -> bool:
        return self.environment in {"development", "test"}

    @property
    def shed_lag_s(self) -> float:
        """Event-loop lag beyond which ordinary requests are shed (0: not checked)."""
        if self.shed_loop_lag_ms is None:
            return 0.0 if self.is_dev else 0.2
        return self.shed_loop_lag_ms / 1000

    @property
    def redis_is_memory(self) -> bool:
        return self.redis_url.startswith("memory://")

    @property
    def embedded_jobs(self) -> bool:
        return self.redis_is_memory if self.jobs_embedded is None else self.jobs_embedded

    @property
    def strict_columns(self) -> bool:
        return (not self.is_dev) if self.column_strict is None else self.column_strict


@lru_cache
def get_settings() -> Settings:
    return Settings()
