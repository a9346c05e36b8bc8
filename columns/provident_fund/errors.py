from __future__ import annotations

from app_api.core.errors import AppError, NotFound, UpstreamError, ValidationFailed


class FundAccountNotFound(NotFound):
    code = "provident_fund.account_not_found"
    title = "公积金中心未查到您的缴存账户"


class RealNameMissing(AppError):
    code = "provident_fund.real_name_missing"
    title = "请先完成实名认证"
    status = 403


class CenterUnavailable(UpstreamError):
    code = "provident_fund.center_unavailable"
    title = "公积金中心系统暂时无法响应，请稍后再试"


class WithdrawalRefused(AppError):
    code = "provident_fund.withdrawal_refused"
    title = "公积金中心不予受理该提取申请"
    status = 422


class WithdrawalNotFound(NotFound):
    code = "provident_fund.withdrawal_not_found"
    title = "未找到该提取申请"


class EstimateInvalid(ValidationFailed):
    code = "provident_fund.estimate_invalid"
    title = "测算条件不符合公积金贷款规定"
