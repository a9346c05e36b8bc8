"""The resident's own records (applications, unpaid bills), and the liaison stations near them.

Records are only read for a genuine logged-in sender (:func:`bot.actions.dispatch.run_action` checks
the account against the sender id); anyone else is asked to log in.
"""

from __future__ import annotations

from app_api.core.money import yuan_text
from bot.actions.call import Call


def _need_login(call: Call, what: str) -> bool:
    if call.account_id is not None:
        return False
    call.say(f"查询{what}需要先登录“我家”App。", [("去登录", call.settings.login_link)])
    return True


async def action_application_status(call: Call) -> None:
    if _need_login(call, "办件进度"):
        return
    assert call.account_id is not None
    apps = await call.sources.applications(call.account_id, limit=5)
    if apps is None:
        call.say("办件进度暂时查不到，请稍后再试，或在“我的办件”里查看。")
        return
    if not apps:
        call.say("您还没有提交过申请。想办什么事，可以直接问我。")
        return
    lines = []
    for a in apps:
        status = a.get("status_name") or a.get("status")
        line = f"{a.get('item')}：{status}"
        if a.get("tracking_no"):
            line += f"（快递单号 {a['tracking_no']}）"
        lines.append(line)
    shown, left = call.short(lines)
    text = "您的办件：\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(shown, 1))
    if left:
        text += f"\n还有{left}件，在“我的办件”里查看。"
    call.say(text)


async def action_unpaid_bills(call: Call) -> None:
    if _need_login(call, "待缴账单"):
        return
    assert call.account_id is not None
    bills = await call.sources.unpaid_bills(call.account_id)
    if bills is None:
        call.say("待缴账单暂时查不到，请稍后再试，或在“生活缴费”里查看。")
        return
    if not bills:
        call.say("您目前没有待缴的账单。")
        return
    lines = [f"{b['title'] or b['biller']}：{yuan_text(b['amount_fen'])}元" for b in bills]
    total = sum(b["amount_fen"] for b in bills)
    shown, left = call.short(lines)
    text = f"您有{len(bills)}笔待缴账单，共{yuan_text(total)}元：\n" + "\n".join(shown)
    if left:
        text += f"\n还有{left}笔，在“生活缴费”里查看。"
    call.say(text)


async def action_nearest_station(call: Call) -> None:
    city = call.slot("city")
    stations = await call.sources.stations(city)
    if stations is None:
        call.say(f"代办点信息暂时查不到。您可以拨打 {call.settings.hotline} 热线，问离您最近的便民服务中心。")
        return
    if not stations:
        where = f"{city}" if city else "您附近"
        call.say(f"{where}暂时没有代办点。可以拨打 {call.settings.hotline} 热线咨询。")
        return
    lines = []
    for s in stations:
        line = f"{s.get('name')}：{s.get('address')}"
        if s.get("phone"):
            line += f"，电话 {s['phone']}"
        lines.append(line)
    shown, _ = call.short(lines)
    call.say("离您近的代办点：\n" + "\n".join(shown))
