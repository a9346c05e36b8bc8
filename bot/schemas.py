"""The chat API's request and reply."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=500, description="居民输入的一句话")
    # Anonymous residents only: keep the conversation going across messages (returned by the
    # first reply). Logged-in residents are recognised from their account.
    conversation_id: str | None = Field(
        default=None, min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    # Anonymous residents only (a logged-in resident's account setting wins): shorter replies.
    elderly: bool | None = None

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("消息不能为空")
        return value


class ReplyButton(BaseModel):
    title: str
    payload: str


class ReplyMessage(BaseModel):
    text: str
    buttons: list[ReplyButton] | None = None


class ChatReply(BaseModel):
    messages: list[ReplyMessage]
    conversation_id: str | None = None
