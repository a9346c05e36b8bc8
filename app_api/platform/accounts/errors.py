from __future__ import annotations

from app_api.core.errors import AppError


class InvalidPhone(AppError):
    code = "auth.invalid_phone"
    title = "手机号码格式不正确"
    status = 422


class SmsCooldown(AppError):
    code = "auth.sms_cooldown"
    title = "验证码发送过于频繁，请稍后再试"
    status = 429


class SmsLimitExceeded(AppError):
    code = "auth.sms_limit"
    title = "今日验证码发送次数已达上限"
    status = 429


class CodeInvalid(AppError):
    code = "auth.code_invalid"
    title = "验证码错误或已失效"
    status = 400


class LoginLocked(AppError):
    code = "auth.locked"
    title = "验证码错误次数过多，请15分钟后再试"
    status = 429


class PasswordRequired(AppError):
    code = "auth.password_required"
    title = "工作人员请使用密码和验证码登录"
    status = 403


class BadCredentials(AppError):
    code = "auth.bad_credentials"
    title = "账号或密码错误"
    status = 401


class TokenInvalid(AppError):
    code = "auth.token_invalid"
    title = "登录已失效，请重新登录"
    status = 401


class TokenExpired(AppError):
    code = "auth.token_expired"
    title = "登录已过期，请重新登录"
    status = 401


class RefreshRaced(AppError):
    """A refresh token spent a moment ago by another tab of the same browser (console only)."""

    code = "auth.refresh_raced"
    title = "登录状态已在其他页面更新，请稍后重试"
    status = 401


class RefreshReused(AppError):
    code = "auth.refresh_reused"
    title = "检测到登录凭证被重复使用，已退出所有相关登录，请重新登录"
    status = 401


class AccountDisabled(AppError):
    code = "auth.account_disabled"
    title = "账号已停用"
    status = 403


class ConsoleLoginRequired(AppError):
    """A staff console page without a valid session cookie: GET/HEAD are sent to refresh, else 401."""

    code = "auth.console_login_required"
    title = "登录已过期，请重新登录"
    status = 401


class CsrfInvalid(AppError):
    code = "auth.csrf_invalid"
    title = "页面已过期，请刷新后重试"
    status = 403


class ConsoleStaffOnly(AppError):
    code = "auth.console_staff_only"
    title = "此入口仅限工作人员登录"
    status = 403
