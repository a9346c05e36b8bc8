from __future__ import annotations

from app_api.core.errors import AppError, Conflict, Forbidden, NotFound


class InstitutionNotFound(NotFound):
    code = "loans.institution_not_found"
    title = "未找到该金融机构"


class ProductNotFound(NotFound):
    code = "loans.product_not_found"
    title = "未找到该贷款产品或产品已下架"


class ApplicationNotFound(NotFound):
    code = "loans.application_not_found"
    title = "未找到该贷款申请"


class AmountOutOfRange(AppError):
    code = "loans.amount_out_of_range"
    title = "申请金额不在该产品的额度范围内"
    status = 422


class TermOutOfRange(AppError):
    code = "loans.term_out_of_range"
    title = "贷款期限不在该产品的期限范围内"
    status = 422


class RateOutOfRange(AppError):
    code = "loans.rate_out_of_range"
    title = "利率不在该产品公布的利率范围内"
    status = 422


class ApplicantTypeNotAllowed(AppError):
    code = "loans.applicant_type_not_allowed"
    title = "该产品不面向此类申请人"
    status = 422


class ConsentScopeMissing(AppError):
    code = "loans.consent_scope_missing"
    title = "申请该产品需同意向机构提供所列信息"
    status = 422


class BusinessInfoMissing(AppError):
    code = "loans.business_info_missing"
    title = "小微企业申请需填写企业名称和统一社会信用代码"
    status = 422


class TooManyOpenApplications(Conflict):
    code = "loans.too_many_open"
    title = "您在办的贷款申请过多，请等待审批结果"


class IllegalTransition(Conflict):
    code = "loans.illegal_transition"
    title = "该申请当前状态不允许此操作"


class NotAnOfficer(Forbidden):
    code = "loans.not_an_officer"
    title = "您的账号未关联金融机构"
