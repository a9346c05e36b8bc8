"""HTTP API of life events (一件事), included in the column's router: the life events and their
combined guide (public), and a resident's life event from draft to the one delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount, public
from columns.gov_services import life_event_applications as bundle_apps
from columns.gov_services import life_events
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.config import get_config
from columns.gov_services.dependencies import OwnedBundleApplication
from columns.gov_services.models import (
    BUNDLE_DRAFT,
    BUNDLE_STATUS_NAMES,
    STATUS_NAMES,
    Bundle,
    BundleApplication,
)
from columns.gov_services.schemas import (
    BundleApplicationCreate,
    BundleApplicationOut,
    BundleApplicationsOut,
    BundleChildOut,
    BundleConsentOut,
    BundleEventOut,
    BundleFieldOut,
    BundleGuideOut,
    BundleItemOut,
    BundleMaterialOut,
    BundlesOut,
    BundleSummaryOut,
    BundleUploadOut,
    FieldsIn,
    FormOut,
    PrefillIn,
    SubmitIn,
)

router = APIRouter(tags=["gov_services"])


async def _summary(session: SessionDep, bundle: Bundle) -> tuple[BundleSummaryOut, list[CatalogueItem]]:
    found = await life_events.items_of(session, bundle)
    items = [i for _, i in found if i is not None]
    complete = len(items) == len(found)
    rows = []
    for code, item in found:
        waits = sorted(set(life_events.waits_for(item, items).values())) if item and complete else []
        rows.append(
            BundleItemOut(
                code=code,
                name=item.name if item else None,
                department=item.department if item else None,
                promised_days=item.promised_days if item else None,
                available=item is not None,
                waits_for=waits,
            )
        )
    departments = list(dict.fromkeys(i.department for i in items))
    out = BundleSummaryOut(
        code=bundle.code,
        name=bundle.name,
        summary=bundle.summary,
        departments=departments,
        items=rows,
        available=complete,
    )
    return out, items


@router.get("/bundles", dependencies=[Depends(public)])
async def list_bundles(session: SessionDep) -> BundlesOut:
    """Life events (一件事) a resident can do as one application."""
    return BundlesOut(
        bundles=[(await _summary(session, b))[0] for b in await life_events.active_bundles(session)]
    )


@router.get("/bundles/{code}", dependencies=[Depends(public)])
async def bundle_guide(code: str, session: SessionDep) -> BundleGuideOut:
    """A life event's combined guide: each field once, each material once, one consent per record
    group, the delivery, and the order its items are filed in."""
    bundle = await life_events.get_bundle(session, code)
    summary, items = await _summary(session, bundle)
    bdef = life_events.def_of(bundle)
    return BundleGuideOut(
        **summary.model_dump(),
        promised_days=bundle.promised_days,
        fields=[BundleFieldOut.model_validate(f) for f in life_events.combined_fields(bdef, items)],
        materials=[
            BundleMaterialOut.model_validate(m, from_attributes=True)
            for m in life_events.combined_materials(items)
        ],
        consents=[
            BundleConsentOut(group=g, consent_text=life_events.consent_text(bundle.name, g, d), departments=d)
            for g, d in life_events.record_groups(items).items()
        ],
        delivery=life_events.delivery_options(items),
        order=life_events.order_of(items) if summary.available else [],
    )


async def _out(session: SessionDep, b: BundleApplication, *, full: bool = True) -> BundleApplicationOut:
    out = BundleApplicationOut(
        id=b.id,
        number=b.number,
        bundle_code=b.bundle_code,
        bundle_name=b.bundle_name,
        status=b.status,
        status_name=BUNDLE_STATUS_NAMES[b.status],
        delivery=b.delivery,
        tracking_no=b.tracking_no,
        created_at=b.created_at,
        submitted_at=b.submitted_at,
        completed_at=b.completed_at,
        delivered_at=b.delivered_at,
    )
    if not full:
        return out
    bundle = await life_events.get_bundle(session, b.bundle_code)
    labels = {f.key: f.label for f in life_events.def_of(bundle).fields}
    uploads = await bundle_apps.uploads_of(session, b)
    kids = await bundle_apps.children(session, b)
    out.form = FormOut.model_validate(bundle_apps.form_view(b, labels))
    out.uploads = [BundleUploadOut.model_validate(u, from_attributes=True) for u in uploads]
    if b.status == BUNDLE_DRAFT:
        items = [i for _, i in await life_events.items_of(session, bundle) if i is not None]
        out.missing_materials = bundle_apps.missing_materials(
            b, items, bundle_apps.form_of(b), {u.material for u in uploads}
        )
    out.applications = [
        BundleChildOut(
            application_id=k.id,
            number=k.number,
            item_code=k.item_code,
            item_name=k.item_name,
            department=k.department,
            status=k.status,
            status_name=STATUS_NAMES[k.status],
            limit_days=k.limit_days,
            due_at=k.due_at,
            submitted_at=k.submitted_at,
            decided_at=k.decided_at,
            decision_reason=k.decision_reason,
            result_cert_no=k.result_cert_no,
            tracking_no=k.tracking_no,
        )
        for k in kids
    ]
    out.timeline = [
        BundleEventOut.model_validate(e) for e in await bundle_apps.combined_timeline(session, b, kids)
    ]
    return out


@router.post("/bundle-applications", status_code=201)
async def start_bundle(
    body: BundleApplicationCreate, principal: CurrentAccount, session: SessionDep, response: Response
) -> BundleApplicationOut:
    """Start a life event (draft), filled from the records with the consents given on its one
    consent screen; the same client key returns the same life event."""
    b, created = await bundle_apps.create(
        session, principal=principal, bundle_code=body.bundle_code, client_key=body.client_key
    )
    if not created:
        response.status_code = 200
    elif body.consent_groups:
        await bundle_apps.prefill(session, b=b, principal=principal, groups=body.consent_groups)
    return await _out(session, b)


@router.get("/bundle-applications")
async def my_bundles(principal: CurrentAccount, session: SessionDep) -> BundleApplicationsOut:
    """This resident's life events, newest first."""
    rows = await bundle_apps.mine(session, account_id=principal.id)
    return BundleApplicationsOut(bundle_applications=[await _out(session, b, full=False) for b in rows])


@router.get("/bundle-applications/{bundle_app_id}")
async def get_bundle_application(b: OwnedBundleApplication, session: SessionDep) -> BundleApplicationOut:
    """A life event with its items' applications and the combined timeline."""
    return await _out(session, b)


@router.post("/bundle-applications/{bundle_app_id}/prefill")
async def prefill_bundle(
    body: PrefillIn, b: OwnedBundleApplication, principal: CurrentAccount, session: SessionDep
) -> BundleApplicationOut:
    """Consent once per record group for every item, and fill the combined form."""
    await bundle_apps.prefill(session, b=b, principal=principal, groups=body.groups)
    return await _out(session, b)


@router.put("/bundle-applications/{bundle_app_id}/fields")
async def fill_bundle(
    body: FieldsIn, b: OwnedBundleApplication, principal: CurrentAccount, session: SessionDep
) -> BundleApplicationOut:
    """Fill the combined form's typed fields (each asked once for all items)."""
    await bundle_apps.fill(session, b=b, principal=principal, fields=body.fields)
    return await _out(session, b)


@router.post("/bundle-applications/{bundle_app_id}/uploads", status_code=201)
async def upload_bundle_material(
    b: OwnedBundleApplication,
    principal: CurrentAccount,
    session: SessionDep,
    material: Annotated[str, Form(max_length=100)],
    file: Annotated[UploadFile, File()],
) -> BundleUploadOut:
    """Upload a material once for every item of the life event that needs it."""
    limit = get_config().upload_max_bytes
    data = await file.read(limit + 1)
    up = await bundle_apps.add_upload(
        session,
        b=b,
        principal=principal,
        material=material,
        filename=file.filename or "",
        content_type=file.content_type,
        data=data,
    )
    return BundleUploadOut.model_validate(up, from_attributes=True)


@router.post("/bundle-applications/{bundle_app_id}/submit")
async def submit_bundle(
    body: SubmitIn, b: OwnedBundleApplication, principal: CurrentAccount, session: SessionDep
) -> BundleApplicationOut:
    """Submit the life event: one application per item, each in its department's queue (or filed
    when the result it needs is issued). Submitting again changes nothing."""
    done = await bundle_apps.submit(
        session,
        bundle_app_id=b.id,
        principal=principal,
        delivery=body.delivery,
        address=body.address.model_dump() if body.address else None,
    )
    return await _out(session, done)
