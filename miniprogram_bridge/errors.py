from __future__ import annotations

from app_api.core.errors import AppError


class LoginCodeInvalid(AppError):
    code = "mp.code_invalid"
    title = "登录凭证无效，请重新进入小程序"
    status = 400


class LoginCodeUsed(AppError):
    code = "mp.code_used"
    title = "登录凭证已被使用，请重新进入小程序"
    status = 400


class PhoneCodeInvalid(AppError):
    code = "mp.phone_code_invalid"
    title = "手机号授权已失效，请重新授权或改用短信验证码"
    status = 400


class PhoneNotSupported(AppError):
    code = "mp.phone_not_supported"
    title = "暂不支持该手机号，请使用中国大陆手机号"
    status = 422


class WeChatUnavailable(AppError):
    code = "mp.wechat_unavailable"
    title = "微信服务暂时无法响应，请稍后再试"
    status = 502


class WeChatRateLimited(AppError):
    code = "mp.wechat_rate_limited"
    title = "请求过于频繁，请稍后再试"
    status = 429


class AlipayUnavailable(AppError):
    code = "mp.alipay_unavailable"
    title = "支付宝服务暂时无法响应，请稍后再试"
    status = 502


class AlipayNotConfigured(AppError):
    code = "mp.alipay_not_configured"
    title = "暂未开通支付宝小程序登录"
    status = 503


class BindTicketInvalid(AppError):
    code = "mp.bind_ticket_invalid"
    title = "绑定手机号的操作已过期，请重新登录"
    status = 400


class OpenIdBoundElsewhere(AppError):
    code = "mp.openid_bound_elsewhere"
    title = "该微信/支付宝账号已绑定其他手机号"
    status = 409


class AccountAlreadyBound(AppError):
    code = "mp.account_already_bound"
    title = "该手机号已绑定其他微信/支付宝账号，请先解除原绑定"
    status = 409


class StaffNotAllowed(AppError):
    code = "mp.staff_not_allowed"
    title = "工作人员账号请使用密码和验证码登录"
    status = 403
