"""Errors residents and admins see from the utilities column (codes ``utilities.*``)."""

from __future__ import annotations

from app_api.core.errors import AppError, Conflict, NotFound, TooManyRequests, UpstreamError, ValidationFailed


class UnknownBiller(NotFound):
    code = "utilities.unknown_biller"
    title = "暂不支持该缴费单位"


class AccountNumberInvalid(ValidationFailed):
    code = "utilities.account_number_invalid"
    title = "户号格式不正确，请对照纸质账单填写"


class AccountNotFound(NotFound):
    code = "utilities.account_not_found"
    title = "缴费单位未查到该户号"


class HolderNameMismatch(AppError):
    code = "utilities.holder_name_mismatch"
    title = "户名与户号登记的户主姓名不一致"
    status = 422


class BindingNotFound(NotFound):
    code = "utilities.binding_not_found"
    title = "未找到该绑定户号"


class AlreadyBound(Conflict):
    code = "utilities.already_bound"
    title = "该户号已绑定"


class TooManyBindings(Conflict):
    code = "utilities.too_many_bindings"
    title = "绑定的户号数量已达上限"


class BindAttemptsExceeded(TooManyRequests):
    code = "utilities.bind_attempts_exceeded"
    title = "今日绑定失败次数过多，请明天再试"


class BillNotFound(NotFound):
    code = "utilities.bill_not_found"
    title = "未找到该账单"


class BillAlreadyPaid(Conflict):
    code = "utilities.bill_already_paid"
    title = "该账单已缴清，请勿重复缴费"


class BillChanged(Conflict):
    code = "utilities.bill_changed"
    title = "账单已变化（可能已在其他渠道缴纳），请刷新后重试"


class PaymentNotFound(NotFound):
    code = "utilities.payment_not_found"
    title = "未找到该缴费记录"


class NoticeNotFound(NotFound):
    code = "utilities.notice_not_found"
    title = "未找到该销账通知"


class NoticeNotDead(Conflict):
    code = "utilities.notice_not_dead"
    title = "只有投递失败的销账通知可以重新投递"


class BillerUnavailable(UpstreamError):
    """Timeout, connection failure, 5xx, or an answer we cannot read: worth retrying."""

    code = "utilities.biller_unavailable"
    title = "缴费单位系统暂时无法响应，请稍后再试"


class BillerRejected(AppError):
    """The biller understood and refused (amount differs, bill closed): retrying will not help."""

    code = "utilities.biller_rejected"
    title = "缴费单位拒绝了此请求"
    status = 422
