"""Errors of the government services column (codes ``gov_services.*``, Chinese titles)."""

from __future__ import annotations

from app_api.core.errors import AppError, Conflict, Forbidden, NotFound, ValidationFailed


class CatalogueFileInvalid(ValidationFailed):
    """A catalogue file with any bad row: nothing is imported; ``errors`` lists every problem."""

    code = "gov_services.catalogue_file_invalid"
    title = "事项目录文件有误，未导入任何事项"


class ItemNotFound(NotFound):
    code = "gov_services.item_not_found"
    title = "未找到该办事事项"


class ApplicationNotFound(NotFound):
    # Also raised for someone else's application, so its existence does not leak.
    code = "gov_services.application_not_found"
    title = "未找到该申请"


class OutsideDepartment(Forbidden):
    code = "gov_services.outside_department"
    title = "该申请不属于您所在部门，无权办理"


class InvalidTransition(Conflict):
    code = "gov_services.invalid_state"
    title = "申请当前状态不允许此操作"


class MaterialsMissing(ValidationFailed):
    code = "gov_services.materials_missing"
    title = "申请材料不齐全"


class UploadRejected(AppError):
    code = "gov_services.upload_rejected"
    title = "上传的文件不符合要求"
    status = 422


class UploadTooLarge(AppError):
    code = "gov_services.upload_too_large"
    title = "上传的文件过大"
    status = 413


class IdentityRecordMissing(AppError):
    code = "gov_services.real_name_required"
    title = "请先完成实名认证"
    status = 403


class DeliveryInvalid(ValidationFailed):
    code = "gov_services.delivery_invalid"
    title = "送达方式或邮寄地址有误"


class AlreadyRated(Conflict):
    code = "gov_services.already_rated"
    title = "您已评价过该申请"


class PostalError(AppError):
    code = "gov_services.postal_unavailable"
    title = "邮政寄递服务暂时不可用"
    status = 502


class ConditionsNotMet(ValidationFailed):
    """An unmet hard condition rule: ``reasons`` says why, ``conditions`` lists every rule's outcome."""

    code = "gov_services.conditions_not_met"
    title = "不符合申请条件"


class NotInstantApproval(Conflict):
    code = "gov_services.not_instant_approval"
    title = "该申请不是秒批办结的申请"


class RevokeWindowClosed(Conflict):
    code = "gov_services.revoke_window_closed"
    title = "已超过撤销时限，不能撤销该秒批结果"


class FeeNotComputed(ValidationFailed):
    """The item's fee rule needs a form field the application lacks (``field``), or a valid value."""

    code = "gov_services.fee_not_computed"
    title = "无法计算应缴费用"


class FeePaymentClosed(Conflict):
    code = "gov_services.fee_payment_closed"
    title = "该申请当前不能缴费"


class BundleNotFound(NotFound):
    code = "gov_services.bundle_not_found"
    title = "未找到该“一件事”"


class BundleItemUnavailable(Conflict):
    """An item of the life event is withdrawn from the catalogue: ``items`` names it."""

    code = "gov_services.bundle_item_unavailable"
    title = "“一件事”中有事项暂不可办理"


class BundleApplicationNotFound(NotFound):
    # Also raised for someone else's, so its existence does not leak.
    code = "gov_services.bundle_application_not_found"
    title = "未找到该“一件事”申请"


class BundleFieldsInvalid(ValidationFailed):
    """Fields of the combined form missing or wrong: ``problems`` maps each field to why."""

    code = "gov_services.bundle_fields_invalid"
    title = "“一件事”填写的信息有误"
