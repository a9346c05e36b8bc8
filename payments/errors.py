"""Payment errors residents, columns and finance staff can see (codes ``payments.*``)."""

from __future__ import annotations

from app_api.core.errors import AppError, Conflict, NotFound, UpstreamError


class OrderNotFound(NotFound):
    code = "payments.order_not_found"
    title = "未找到该支付订单"


class RefundNotFound(NotFound):
    code = "payments.refund_not_found"
    title = "未找到该退款"


class IllegalTransition(Conflict):
    code = "payments.illegal_transition"
    title = "订单当前状态不允许此操作"


class PurposeAlreadyPaid(Conflict):
    code = "payments.purpose_already_paid"
    title = "该事项已缴费，请勿重复支付"


class RefundExceedsPaid(Conflict):
    code = "payments.refund_exceeds_paid"
    title = "退款金额超过可退金额"


class RefundNumberConflict(Conflict):
    code = "payments.refund_number_conflict"
    title = "退款单号已用于其他订单或金额"


class ProviderNotConfigured(AppError):
    code = "payments.provider_not_configured"
    title = "暂不支持该支付方式"
    status = 422


class ProviderUnavailable(UpstreamError):
    code = "payments.provider_unavailable"
    title = "支付渠道暂时无法响应，请稍后再试"


class ProviderRefused(AppError):
    code = "payments.provider_refused"
    title = "支付渠道拒绝了此请求"
    status = 409


class RunNotFound(NotFound):
    code = "payments.recon_run_not_found"
    title = "未找到该对账记录"


class ItemNotFound(NotFound):
    code = "payments.recon_item_not_found"
    title = "未找到该差错记录"


class AlreadyResolved(Conflict):
    code = "payments.recon_item_resolved"
    title = "该差错已处理"


class RunInProgress(Conflict):
    code = "payments.recon_run_in_progress"
    title = "该日期的对账正在进行中"
