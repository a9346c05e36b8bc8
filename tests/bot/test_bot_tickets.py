"""A human when the assistant cannot help: a resident's consultation ticket, answered by staff through
the API, the resident notified and reading the answer. Rasa is not needed (pointed at a port where
nothing listens, the ticket carries no transcript; with the model: test_bot_chat_context.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.config import BotSettings, get_bot_settings

URL = "/api/v1/bot"


@pytest.fixture
def no_rasa(app: Any) -> Iterator[None]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = BotSettings(rasa_url=f"http://127.0.0.1:{port}", state_file="")
    app.dependency_overrides[get_bot_settings] = lambda: settings
    yield
    app.dependency_overrides.pop(get_bot_settings, None)


async def test_a_ticket_is_answered_by_staff_and_the_resident_notified(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    resident, other = await login(), await login()
    reviewer = await login(roles=["reviewer"])
    question = "我父亲卧床不能到现场，老年证可以家属代办吗？"
    r = await client.post(f"{URL}/tickets", json={"question": question}, headers=resident)
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["status"] == "open" and ticket["question"] == question and ticket["answer"] is None

    # Not another resident's to read, and residents cannot see the staff queue.
    assert (await client.get(f"{URL}/tickets/{ticket['id']}", headers=other)).status_code == 404
    assert (await client.get(f"{URL}/staff/tickets", headers=resident)).status_code == 403
    r = await client.post(
        f"{URL}/staff/tickets/{ticket['id']}/answer", json={"answer": "可以"}, headers=other
    )
    assert r.status_code == 403

    queue = (await client.get(f"{URL}/staff/tickets", headers=reviewer)).json()["tickets"]
    assert any(t["id"] == ticket["id"] and t["question"] == question for t in queue)
    answer = "可以。家属携带双方身份证和户口簿到社区便民服务中心代办，或在“我家”App 由家属代为申请。"
    r = await client.post(
        f"{URL}/staff/tickets/{ticket['id']}/answer", json={"answer": answer}, headers=reviewer
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "answered"
    # Answered once.
    r = await client.post(
        f"{URL}/staff/tickets/{ticket['id']}/answer", json={"answer": "再答"}, headers=reviewer
    )
    assert r.status_code == 409 and r.json()["code"] == "bot.ticket_answered"
    queue = (await client.get(f"{URL}/staff/tickets", headers=reviewer)).json()["tickets"]
    assert all(t["id"] != ticket["id"] for t in queue)

    # The resident reads the answer, and was told it is there.
    mine = (await client.get(f"{URL}/tickets", headers=resident)).json()["tickets"]
    assert [t["answer"] for t in mine if t["id"] == ticket["id"]] == [answer]
    notes = (await client.get("/api/v1/me/notifications", headers=resident)).json()
    items = notes.get("items") or notes.get("notifications") or []
    assert any("在线咨询已有答复" in n["text"] and answer[:20] in n["text"] for n in items), notes


async def test_a_ticket_needs_a_logged_in_resident_and_a_question(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    assert (await client.post(f"{URL}/tickets", json={"question": "你好"})).status_code == 401
    resident = await login()
    r = await client.post(f"{URL}/tickets", json={"question": "x" * 501}, headers=resident)
    assert r.status_code == 422
    r = await client.post(f"{URL}/tickets", json={"question": ""}, headers=resident)
    assert r.status_code == 422


async def test_a_handoff_reply_offers_the_ticket() -> None:
    from bot.router import _offer_a_person
    from bot.schemas import ReplyMessage

    settings = get_bot_settings()
    msgs = [ReplyMessage(text="建议您拨打 12345 政务服务便民热线")]
    _offer_a_person(msgs, logged_in=True, settings=settings)
    assert msgs[0].buttons is not None
    assert [b.payload for b in msgs[0].buttons] == [settings.ticket_link, "tel:12345"]
    anonymous = [ReplyMessage(text="请拨打 12345 热线")]
    _offer_a_person(anonymous, logged_in=False, settings=settings)
    assert anonymous[0].buttons is not None and anonymous[0].buttons[0].payload == settings.login_link
