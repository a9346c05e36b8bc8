"""Errors of the assistant."""

from __future__ import annotations

from app_api.core.errors import AppError, TooManyRequests


class AssistantUnavailable(AppError):
    code = "bot.unavailable"
    title = "智能助手暂时无法使用，请稍后再试，或拨打 12345 政务服务便民热线"
    status = 503


class AssistantStarting(AssistantUnavailable):
    """Rasa is training or loading its model (development: ``bot/rasa-run.sh`` says so); the rest of
    the app already serves."""

    code = "bot.starting"
    title = "智能助手正在启动，请稍后再试"


class ActionTokenInvalid(AppError):
    code = "bot.action_token_invalid"
    title = "助手动作调用未授权"
    status = 401


class UnknownAction(AppError):
    code = "bot.unknown_action"
    title = "未知的助手动作"
    status = 404


class ChatRateLimited(TooManyRequests):
    """Too many messages from one account or one client address in a minute."""

    code = "bot.rate_limited"
    title = "消息发送过于频繁，请稍后再试"


class DraftNotFound(AppError):
    code = "bot.draft_not_found"
    title = "没有找到这份申请草稿"
    status = 404


class DraftExpired(AppError):
    """The walk-through's draft was not opened in time and has been removed."""

    code = "bot.draft_expired"
    title = "这份申请草稿已过期"
    status = 410
