"""Settings of the assistant (prefix ``WOJIA_BOT_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import VAR_DIR, WojiaSettings, get_settings

DEV_ACTION_TOKEN = "dev-bot-action-token"
DEV_SENDER_KEY = "dev-bot-sender-key"


class BotSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_BOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Rasa's HTTP server (`rasa run --enable-api`), bound to loopback.
    rasa_url: str = "http://127.0.0.1:5005"
    # One chat turn: NLU, policies and our own action calls. Rasa answers in well under a second.
    rasa_timeout_s: float = Field(default=10.0, gt=0)
    # Rasa calls the action webhook with "Authorization: Bearer <token>" (bot/rasa/endpoints.yml).
    action_token: SecretStr = SecretStr(DEV_ACTION_TOKEN)
    # Keyed hash that turns an account id into Rasa's sender id (Rasa never sees phone numbers).
    sender_key: SecretStr = SecretStr(DEV_SENDER_KEY)
    # Where ``bot/rasa-run.sh`` writes "<phase> <pid>" while the assistant is not serving yet
    # (phase: training, loading); its pid tells a start still going on from a crashed one.
    # Empty: no such file (production runs Rasa as its own service).
    state_file: str = str(VAR_DIR / "rasa.state")
    # Retry-After of a chat answered while the assistant starts.
    starting_retry_after_s: int = Field(default=30, ge=1, le=600)
    # Messages a minute: per logged-in account, and per client address (anonymous residents and
    # several residents behind one address share it, so it is the larger).
    messages_per_account_per_minute: int = Field(default=30, ge=1)
    messages_per_ip_per_minute: int = Field(default=120, ge=1)
    hotline: str = "12345"
    # Deep link back into the app, filled with the item code (when the catalogue gives none).
    apply_link: str = "wojia://gov_services/items/{code}/apply"
    login_link: str = "wojia://login"
    # Where the app asks the resident's question for staff (POST /api/v1/bot/tickets).
    ticket_link: str = "wojia://bot/tickets/new"
    # The application draft a conditions walk-through hands over is short-lived: removed this long
    # after it was made unless the resident opens it (the deep link below) or takes it up in the app.
    walkthrough_draft_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # The deep link to such a draft, filled with the application id (GET /api/v1/bot/drafts/{id}).
    draft_link: str = "wojia://bot/drafts/{id}"
    # Elderly mode: at most this many list entries and buttons in one reply.
    elderly_max_entries: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.refuse_dev_secrets(
            get_settings().environment,
            {
                "WOJIA_BOT_ACTION_TOKEN": (self.action_token, DEV_ACTION_TOKEN),
                "WOJIA_BOT_SENDER_KEY": (self.sender_key, DEV_SENDER_KEY),
            },
        )
        return self


@lru_cache
def get_bot_settings() -> BotSettings:
    return BotSettings()
