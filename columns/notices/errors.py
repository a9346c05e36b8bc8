from app_api.core.errors import AppError


class NoticeNotFound(AppError):
    code = "notices.not_found"
    title = "公告不存在或已撤回"
    status = 404
