"""Job runtime settings (``WOJIA_JOBS_*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class JobsSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_JOBS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Attempts of a job before it goes to dead letter (a task may set its own ``max_retries`` label).
    max_attempts: int = Field(default=12, ge=1, le=100)
    # Backoff before attempt n+1: min(cap, base * 2**(n-1)), with full jitter on the upper half.
    retry_base_s: float = Field(default=2.0, gt=0, le=3600)
    retry_cap_s: float = Field(default=900.0, gt=0, le=86400)
    # A running job holds a lease this long and renews it every third of it while it runs; a job
    # whose lease ran out (its worker died) is sent again by the relay.
    lease_s: float = Field(default=20.0, ge=2, le=3600)
    # How often the relay looks for jobs to (re)send and the scheduler for due schedules.
    relay_every_s: float = Field(default=5.0, gt=0, le=60)
    tick_every_s: float = Field(default=1.0, gt=0, le=60)
    # A sent job not started after this long (its message was lost: Redis wiped) is sent again.
    resend_after_s: float = Field(default=30.0, ge=1, le=3600)
    # Run the relay and the schedules in this process: the worker and scheduler always do; the api
    # process does in the embedded default (``None`` = when jobs are embedded).
    run_loop: bool | None = None
    relay_batch: int = Field(default=500, ge=1, le=10000)

    @model_validator(mode="after")
    def _coherent(self) -> JobsSettings:
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("WOJIA_JOBS_RETRY_CAP_S must not be below WOJIA_JOBS_RETRY_BASE_S")
        if self.resend_after_s <= self.relay_every_s:
            raise ValueError("WOJIA_JOBS_RESEND_AFTER_S must be longer than WOJIA_JOBS_RELAY_EVERY_S")
        return self


@lru_cache
def get_jobs_settings() -> JobsSettings:
    return JobsSettings()
