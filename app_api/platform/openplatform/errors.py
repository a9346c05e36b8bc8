from __future__ import annotations

from app_api.core.errors import AppError, Conflict, NotFound


class ColumnNotFound(NotFound):
    code = "openplatform.column_not_found"
    title = "未找到该第三方栏目"


class ColumnExists(Conflict):
    code = "openplatform.column_exists"
    title = "同名第三方栏目已存在"


class GrantNotFound(NotFound):
    code = "openplatform.grant_not_found"
    title = "未找到该授权记录"


class TicketInvalid(AppError):
    code = "openplatform.ticket_invalid"
    title = "登录凭据无效或已过期，请返回应用重新打开"
    status = 401


class ConsentExpired(AppError):
    code = "openplatform.consent_expired"
    title = "授权页面已使用或已过期，请返回应用重新打开"
    status = 400
