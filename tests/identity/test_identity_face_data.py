"""Face data after a check: withdrawing the face consent (by any path) or asking deletes it."""

from __future__ import annotations

from identity_api_helpers import API, account_id, genuine_resident, me, problem, reach_l3
from sqlmodel import select

from identity.models import IdentityFaceProfile


async def test_withdrawing_face_consent_deletes_face_data(client, login, person_factory, fix_steps) -> None:
    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
    assert (await me(client, headers))["face"]["data_stored"] is True
    r = await client.delete(f"{API}/face/consent", headers=headers)
    assert r.status_code == 200 and r.json() == {"consents_withdrawn": 1, "face_data_deleted": True}
    view = await me(client, headers)
    assert view["face"] == {**view["face"], "consented": False, "data_stored": False}
    # The level reached stays; a new face check needs a new consent.
    assert view["identity_level"] == 3
    problem(
        await client.post(f"{API}/face/challenges", json={}, headers=headers),
        403,
        "identity.face_consent_required",
    )


async def test_withdrawal_through_the_platform_consent_endpoint_also_deletes(
    client, login, person_factory, fix_steps, session
) -> None:
    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
    consent = next(x for x in (await me(client, headers))["consents"] if x["purpose"] == "identity.face")
    r = await client.delete(f"/api/v1/me/consents/{consent['id']}", headers=headers)
    assert r.status_code == 200, r.text
    assert (await me(client, headers))["face"]["data_stored"] is False
    aid = await account_id(client, headers)
    assert (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).first() is None


async def test_delete_my_face_data(client, login, person_factory, fix_steps) -> None:
    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
    r = await client.delete(f"{API}/me/face-data", headers=headers)
    assert r.json()["face_data_deleted"] is True
    r = await client.delete(f"{API}/me/face-data", headers=headers)
    assert r.json() == {"consents_withdrawn": 0, "face_data_deleted": False}


async def test_sweep_deletes_face_data_of_consents_withdrawn_elsewhere(
    client, login, person_factory, fix_steps, session
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.consent import service as consent_service
    from identity.tasks import sweep_withdrawn_face_consents

    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
    aid = await account_id(client, headers)
    consent = next(x for x in (await me(client, headers))["consents"] if x["purpose"] == "identity.face")
    async with session_scope() as s:  # withdrawn by some other path than identity's own
        await consent_service.withdraw(s, account_id=aid, consent_id=consent["id"])
    assert await sweep_withdrawn_face_consents() >= 1
    assert (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).first() is None
