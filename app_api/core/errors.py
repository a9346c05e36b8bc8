"""One error hierarchy for the whole platform, rendered as RFC 9457 problem+json.

Every error a resident, agent or staff member can see carries a stable ``code``
(``package.snake_case``) that clients branch on, and a Chinese ``title`` that
residents read. Services raise these; they never raise ``HTTPException``.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """Base class: subclasses set ``code``, ``title`` and ``status`` as class attributes.

    ``detail`` is a human-readable (Chinese) explanation of this occurrence; ``extra``
    holds machine-readable members added to the problem document (for example the
    identity level needed).
    """

    code: ClassVar[str] = "app.error"
    title: ClassVar[str] = "请求未能完成"
    status: ClassVar[int] = 400

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(f"{self.code}: {self.detail}")

    def to_problem(self, *, instance: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://wojia.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if request_id:
            body["request_id"] = request_id
        body.update(self.extra)
        return body


class BadRequest(AppError):
    code = "app.bad_request"
    title = "请求格式不正确"
    status = 400


class ValidationFailed(AppError):
    code = "app.validation_failed"
    title = "提交的信息有误，请检查后重试"
    status = 422


class InvalidCharacters(ValidationFailed):
    """Text in the request (path, query, body, form field or file name) holds a control character."""

    code = "app.invalid_characters"
    title = "提交的内容含有不允许的字符"


class NotFound(AppError):
    code = "app.not_found"
    title = "未找到相关内容"
    status = 404


class Conflict(AppError):
    code = "app.conflict"
    title = "操作与当前状态冲突"
    status = 409


class PayloadTooLarge(AppError):
    code = "app.payload_too_large"
    title = "提交的内容过大"
    status = 413


class TooManyRequests(AppError):
    code = "app.too_many_requests"
    title = "操作过于频繁，请稍后再试"
    status = 429


class ServiceUnavailable(AppError):
    code = "app.service_unavailable"
    title = "服务暂时不可用，请稍后再试"
    status = 503


class DependencyUnavailable(ServiceUnavailable):
    """PostgreSQL or Redis cannot be reached (``app_api.core.outage``): retry shortly."""

    code = "app.unavailable"
    title = "系统繁忙，请稍后再试"


class UpstreamError(AppError):
    """An external system (biller, provider, data center) failed or answered garbage."""

    code = "app.upstream_error"
    title = "外部系统暂时无法响应，请稍后再试"
    status = 502


class Unauthorized(AppError):
    code = "auth.unauthorized"
    title = "请先登录"
    status = 401


class Forbidden(AppError):
    code = "auth.forbidden"
    title = "您没有权限进行此操作"
    status = 403


class IdentityLevelRequired(AppError):
    code = "identity.level_required"
    title = "需要更高的实名认证等级"
    status = 403

    def __init__(self, level_required: int, level_current: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"此功能需要 L{level_required} 级实名认证，您当前为 L{level_current} 级",
            level_required=level_required,
            level_current=level_current,
        )


class MethodNotAllowed(AppError):
    code = "app.method_not_allowed"
    title = "不支持该请求方法"
    status = 405


class InternalError(AppError):
    code = "app.internal"
    title = "系统繁忙，请稍后再试"
    status = 500
