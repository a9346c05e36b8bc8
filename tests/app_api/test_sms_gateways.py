"""Production SMS: each message kind under its own approved template, parameters in the template's
order, through the real Tencent Cloud and Aliyun SDKs against their protocol sandboxes on loopback
(signatures verified there); a template the provider refuses is an error the caller surfaces."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app_api.platform import notify, sms
from app_api.platform.sms.sandbox.aliyun import AliyunSmsSandbox
from app_api.platform.sms.sandbox.tencent import TencentSmsSandbox
from app_api.platform.sms.settings import SmsSettings, TemplateBinding
from payments.sandbox.common import serve_in_thread
from tests.conftest import new_phone

API = "/api/v1"
SIGN = "我家亳州"

# A notification whose SMS parameters are not in the order its params dict is built in.
ORDERED = "test.sms_ordered"
notify.register_template(ORDERED, "您申请的“$item”（编号$number）$status。")

TENCENT_TEMPLATES = {
    "100001": "您的登录验证码为{1}，{2}分钟内有效。请勿泄露给他人。",
    "100002": "{1}代办员申请代您办理：{2}，有效期{3}天。授权验证码{4}，{5}分钟内有效。",
    "100003": "您申请的“{1}”（编号{2}）{3}。",
    "100004": "验证码{2}，{1}分钟内有效。",  # an approved template whose parameters come in another order
}
ALIYUN_TEMPLATES = {
    "SMS_1001": "您的登录验证码为${code}，${minutes}分钟内有效。请勿泄露给他人。",
    "SMS_1002": "${station}代办员申请代您办理：${scopes}，有效期${days}天。授权验证码${code}，${minutes}分钟内有效。",
    "SMS_1003": "您申请的“${item}”（编号${number}）${status}。",
}


def _bindings(ids: dict[str, str]) -> dict[str, TemplateBinding]:
    declared = sms.declared()
    return {kind: TemplateBinding(id=tid, params=len(declared[kind].params)) for kind, tid in ids.items()}


@pytest.fixture(scope="module")
def tencent() -> Iterator[tuple[TencentSmsSandbox, str]]:
    sandbox = TencentSmsSandbox(
        secret_id="AKIDsandbox",
        secret_key="tencent-secret",
        app_id="1400000001",
        sign=SIGN,
        templates=TENCENT_TEMPLATES,
    )
    server = serve_in_thread(sandbox.app)
    yield sandbox, server.url.removeprefix("http://")
    server.stop()


@pytest.fixture(scope="module")
def aliyun() -> Iterator[tuple[AliyunSmsSandbox, str]]:
    sandbox = AliyunSmsSandbox(
        access_key_id="LTAIsandbox", access_key_secret="aliyun-secret", sign=SIGN, templates=ALIYUN_TEMPLATES
    )
    server = serve_in_thread(sandbox.app)
    yield sandbox, server.url.removeprefix("http://")
    server.stop()


def tencent_settings(endpoint: str, *, secret: str = "tencent-secret", **templates: str) -> SmsSettings:
    ids = {"login_code": "100001", "agents.mandate_code": "100002", ORDERED: "100003", **templates}
    return SmsSettings(
        provider="tencent",
        sign_name=SIGN,
        templates=_bindings(ids),
        endpoint=endpoint,
        scheme="http",
        tencent_secret_id=SecretStr("AKIDsandbox"),
        tencent_secret_key=SecretStr(secret),
        tencent_app_id="1400000001",
    )


def aliyun_settings(endpoint: str, *, secret: str = "aliyun-secret", **templates: str) -> SmsSettings:
    ids = {"login_code": "SMS_1001", "agents.mandate_code": "SMS_1002", ORDERED: "SMS_1003", **templates}
    return SmsSettings(
        provider="aliyun",
        sign_name=SIGN,
        templates=_bindings(ids),
        endpoint=endpoint,
        scheme="http",
        aliyun_access_key_id=SecretStr("LTAIsandbox"),
        aliyun_access_key_secret=SecretStr(secret),
    )


@pytest.fixture
def use_gateway() -> Iterator[Any]:
    """Swap the process's gateway for the test; the development sandbox comes back afterwards."""
    before = sms.get_sms()
    yield lambda settings: sms.set_sms(sms.build_gateway(settings))
    sms.set_sms(before)


async def _ask_code(client: httpx.AsyncClient, phone: str) -> httpx.Response:
    return await client.post(f"{API}/auth/sms-codes", json={"phone": phone})


async def _login_with_delivered_code(client: httpx.AsyncClient, phone: str, text: str) -> None:
    code = re.search(r"验证码为(\d{6})，5分钟内有效", text)
    assert code, text
    resp = await client.post(f"{API}/auth/login", json={"phone": phone, "code": code.group(1)})
    assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------- Tencent Cloud


async def test_tencent_login_code_reads_right_and_logs_in(
    client: httpx.AsyncClient, tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    use_gateway(tencent_settings(endpoint))
    phone = new_phone()
    resp = await _ask_code(client, phone)
    assert resp.status_code == 202, resp.text
    [msg] = sandbox.inbox(phone)
    assert msg.template == "100001"
    await _login_with_delivered_code(client, phone, msg.text)


async def test_tencent_each_kind_under_its_own_template_in_declared_order(
    tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    use_gateway(tencent_settings(endpoint))
    phone = new_phone()
    gw = sms.get_sms()
    # Built in another order than the text declares: the provider still gets item, number, status.
    await gw.send(phone, ORDERED, {"status": "已办结", "number": "BZ2026001", "item": "老年人优待证办理"})
    params = {
        "minutes": 10,
        "code": "123456",
        "days": 30,
        "scopes": "代为申请办理事项",
        "station": "常熟联络站",
    }
    await gw.send(phone, "agents.mandate_code", params)
    texts = {m.template: m.text for m in sandbox.inbox(phone)}
    assert texts["100003"] == f"【{SIGN}】您申请的“老年人优待证办理”（编号BZ2026001）已办结。"
    assert texts["100002"].startswith(
        f"【{SIGN}】常熟联络站代办员申请代您办理：代为申请办理事项，有效期30天。"
    )
    assert "授权验证码123456，10分钟内有效" in texts["100002"]


async def test_tencent_template_with_named_parameter_order(
    tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    settings = tencent_settings(endpoint)
    settings.templates["login_code"] = TemplateBinding(id="100004", params=["minutes", "code"])
    use_gateway(settings)
    phone = new_phone()
    await sms.get_sms().send(phone, "login_code", {"code": "654321", "minutes": 5})
    assert [m.text for m in sandbox.inbox(phone)] == [f"【{SIGN}】验证码654321，5分钟内有效。"]


async def test_tencent_refused_template_is_a_clear_error_and_the_resident_can_ask_again(
    client: httpx.AsyncClient, tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    use_gateway(tencent_settings(endpoint, login_code="999999"))  # not approved at the provider
    phone = new_phone()
    resp = await _ask_code(client, phone)
    assert resp.status_code == 502, resp.text
    problem = resp.json()
    assert problem["code"] == "sms.failed" and problem["title"] == "短信发送失败，请稍后再试"
    assert problem["upstream_code"] == "FailedOperation.TemplateIncorrectOrUnapproved"
    assert sandbox.inbox(phone) == []
    use_gateway(tencent_settings(endpoint))  # the operator fixes the template: no cooldown left behind
    assert (await _ask_code(client, phone)).status_code == 202
    await _login_with_delivered_code(client, phone, sandbox.inbox(phone)[0].text)


async def test_tencent_sandbox_refuses_a_bad_signature(
    tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    use_gateway(tencent_settings(endpoint, secret="not-the-secret"))
    phone = new_phone()
    with pytest.raises(sms.SmsFailed) as caught:
        await sms.get_sms().send(phone, "login_code", {"code": "111111", "minutes": 5})
    assert caught.value.extra["upstream_code"] == "AuthFailure.SignatureFailure"
    assert caught.value.extra["retryable"] is False
    assert sandbox.inbox(phone) == []


async def test_tencent_parameter_count_mismatch_is_refused_by_the_provider(
    tencent: tuple[TencentSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = tencent
    use_gateway(tencent_settings(endpoint, **{ORDERED: "100001"}))  # a two-parameter template
    with pytest.raises(sms.SmsFailed) as caught:
        await sms.get_sms().send(new_phone(), ORDERED, {"item": "x", "number": "1", "status": "已受理"})
    assert caught.value.extra["upstream_code"] == "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
    assert sandbox.refused[-1] == caught.value.extra["upstream_code"]


# ---------------------------------------------------------------- Aliyun


async def test_aliyun_login_code_reads_right_and_logs_in(
    client: httpx.AsyncClient, aliyun: tuple[AliyunSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = aliyun
    use_gateway(aliyun_settings(endpoint))
    phone = new_phone()
    resp = await _ask_code(client, phone)
    assert resp.status_code == 202, resp.text
    [msg] = sandbox.inbox(phone)
    assert msg.template == "SMS_1001" and set(msg.params) == {"code", "minutes"}
    await _login_with_delivered_code(client, phone, msg.text)


async def test_aliyun_parameters_by_name(aliyun: tuple[AliyunSmsSandbox, str], use_gateway: Any) -> None:
    sandbox, endpoint = aliyun
    use_gateway(aliyun_settings(endpoint))
    phone = new_phone()
    await sms.get_sms().send(
        phone, ORDERED, {"status": "已办结", "number": "BZ2026001", "item": "高龄津贴申领"}
    )
    assert [m.text for m in sandbox.inbox(phone)] == [
        f"【{SIGN}】您申请的“高龄津贴申领”（编号BZ2026001）已办结。"
    ]


async def test_aliyun_refused_template_is_a_clear_error(
    client: httpx.AsyncClient, aliyun: tuple[AliyunSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = aliyun
    use_gateway(aliyun_settings(endpoint, login_code="SMS_404"))
    phone = new_phone()
    resp = await _ask_code(client, phone)
    assert resp.status_code == 502 and resp.json()["upstream_code"] == "isv.SMS_TEMPLATE_ILLEGAL"
    assert sandbox.inbox(phone) == []


async def test_aliyun_sandbox_refuses_a_bad_signature(
    aliyun: tuple[AliyunSmsSandbox, str], use_gateway: Any
) -> None:
    sandbox, endpoint = aliyun
    use_gateway(aliyun_settings(endpoint, secret="not-the-secret"))
    phone = new_phone()
    with pytest.raises(sms.SmsFailed) as caught:
        await sms.get_sms().send(phone, "login_code", {"code": "111111", "minutes": 5})
    assert caught.value.extra["upstream_code"] == "SignatureDoesNotMatch"
    assert sandbox.inbox(phone) == []


async def test_notification_over_sms_goes_through_the_channel_in_declared_order(
    aliyun: tuple[AliyunSmsSandbox, str], use_gateway: Any
) -> None:
    from app_api.platform.notify.channels import SmsChannel
    from app_api.platform.notify.models import Notification
    from app_api.platform.notify.templates import get_template

    sandbox, endpoint = aliyun
    use_gateway(aliyun_settings(endpoint, login_code="SMS_1001"))
    phone = new_phone()
    note = Notification(
        account_id="a",
        template=ORDERED,
        params={"status": "需要补正", "item": "老年人优待证办理", "number": "BZ7"},
        text="ignored by providers",
    )
    await SmsChannel().deliver(phone, note, get_template(ORDERED))
    assert sandbox.inbox(phone)[0].text == f"【{SIGN}】您申请的“老年人优待证办理”（编号BZ7）需要补正。"


# ---------------------------------------------------------------- start-up check


def test_check_names_each_missing_template_and_each_mismatch() -> None:
    declared = sms.declared()
    settings = SmsSettings(
        provider="sandbox",
        templates={
            "login_code": TemplateBinding(id="1", params=3),
            "agents.mandate_code": TemplateBinding(id="2", params=["station", "code"]),
        },
    )
    problems = sms.check_templates(settings, declared)
    text = "; ".join(problems)
    assert "login_code: template 1 has 3 parameters, the message has 2 (code, minutes)" in text
    assert "agents.mandate_code: template 2 has parameters (station, code)" in text
    assert f"{ORDERED}: no template id in WOJIA_SMS_TEMPLATES (parameters: item, number, status)" in text
    complete = {k: TemplateBinding(id=k, params=len(t.params)) for k, t in declared.items()}
    assert sms.check_templates(SmsSettings(templates=complete), declared) == []


async def test_startup_refuses_outside_development_and_only_warns_in_development(
    monkeypatch: pytest.MonkeyPatch, tencent: tuple[TencentSmsSandbox, str], caplog: pytest.LogCaptureFixture
) -> None:
    from app_api.core.settings import get_settings
    from app_api.platform.accounts.component import component
    from app_api.platform.sms import checks

    _, endpoint = tencent
    settings = tencent_settings(endpoint)  # binds three kinds; every other declared kind is missing
    monkeypatch.setattr(checks, "get_sms_settings", lambda: settings)
    assert component.startup is not None
    await component.startup()  # development: logged
    assert "no template id" in caplog.text
    monkeypatch.setattr(get_settings(), "environment", "production")
    with pytest.raises(sms.SmsTemplatesInvalid) as caught:
        await component.startup()
    assert "WOJIA_SMS_PROVIDER=tencent" in str(caught.value)
    assert "no template id" in str(caught.value)
    settings.templates = {k: TemplateBinding(id=k, params=len(t.params)) for k, t in sms.declared().items()}
    with pytest.raises(sms.SmsTemplatesInvalid, match="WOJIA_SMS_SCHEME=http"):
        await component.startup()  # the loopback sandbox's plain HTTP is for tests only
    settings.scheme = "https"
    await component.startup()  # every kind bound with matching parameters, over HTTPS: starts
