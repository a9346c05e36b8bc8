"""The assistant's conditions walk-through, answered by the catalogue: which questions decide an
item's conditions and materials for one resident, what the catalogue's own rules engine
(:mod:`columns.gov_services.rules`) says of the answers, and the application draft they hand over to.

Implements ``app_api.platform.capabilities.ConditionsGuide`` (the assistant reaches it by lookup,
never by import).
The questions come from the item's rules where it has any (each condition a rule checks, unless the
resident's verified data answers it: the birth date from the verified ID number), otherwise from its
listed conditions (a yes/no each), plus one per material that only some applicants bring. The
verdict is the rules engine's: a rule without the data it needs is "needs a reviewer", never passed.
Answers the resident gives are declarations; submission checks the records again as always.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.column import Column
from app_api.platform.datahub import citizen_id
from columns.gov_services import applications, catalogue_store
from columns.gov_services.catalogue import RECORD_FIELDS, CatalogueItem
from columns.gov_services.errors import ItemNotFound
from columns.gov_services.lifecycle import record_event
from columns.gov_services.models import DRAFT, Application, Event, FeePayment, Upload, Warning_
from columns.gov_services.rules import (
    MET,
    UNKNOWN,
    UNMET,
    AgeAtLeast,
    AgeAtMost,
    EcertHeld,
    Facts,
    FieldIn,
    FieldRange,
    HukouIn,
    RelationshipIn,
    evaluate,
)

YES, NO, UNSURE = "yes", "no", "unsure"
OTHER = "other"
# A household outside the place a hukou rule names, as the resident declares it (the rules engine
# compares place names; this one is in none).
ELSEWHERE = "外地"
DRAFT_LINK = "wojia://columns/gov_services/applications/{id}"
# What creating the walk-through's draft writes on its timeline, "assistant_answers" last; anything
# else, or anything after it, is the resident's doing.
_CREATION_EVENTS = {"drafted", "filled", "assistant_answers"}


def _yes_no(yes: str, no: str) -> list[dict[str, str]]:
    return [{"title": yes, "value": YES}, {"title": no, "value": NO}, {"title": "不确定", "value": UNSURE}]


def _rule_question(rule: Any) -> dict[str, Any]:
    key = f"rule:{rule.id}"
    if isinstance(rule, AgeAtLeast):
        return {
            "key": key,
            "text": f"您是否已年满{rule.value}周岁？",
            "options": _yes_no(f"已满{rule.value}周岁", f"未满{rule.value}周岁"),
        }
    if isinstance(rule, AgeAtMost):
        return {
            "key": key,
            "text": f"您的年龄是否不超过{rule.value}周岁？",
            "options": _yes_no(f"不超过{rule.value}周岁", f"超过{rule.value}周岁"),
        }
    if isinstance(rule, HukouIn):
        return {
            "key": key,
            "text": f"您的户籍是否在{rule.value}？",
            "options": _yes_no(f"是，{rule.value}户籍", f"不是{rule.value}户籍"),
        }
    if isinstance(rule, EcertHeld):
        return {"key": key, "text": f"您是否持有{rule.cert}？", "options": _yes_no("有", "没有")}
    if isinstance(rule, RelationshipIn | FieldIn):
        label = rule.label if isinstance(rule, FieldIn) else "您与当事人的关系"
        options = [{"title": v, "value": v} for v in rule.values] + [{"title": "其他", "value": OTHER}]
        return {"key": key, "text": f"请选择{label}：", "options": options}
    assert isinstance(rule, FieldRange)
    return {"key": key, "text": f"请直接输入{rule.label}（数字）：", "options": [], "number": True}


def _derived_material(condition: str, household_in: bool | None) -> bool | None:
    """Whether a material's condition applies, when the household answer already says so."""
    if household_in is None:
        return None
    if "非本市户籍" in condition or "外地户籍" in condition:
        return not household_in
    if "本市户籍" in condition:
        return household_in
    return None


async def _verified_birth(session: AsyncSession, account_id: str | None) -> dt.date | None:
    # The ID number was verified at real-name authentication; GB 11643 encodes the birth date.
    if account_id is None:
        return None
    account = await session.get(Account, account_id)
    number = account.id_number if account is not None else None
    if not number or citizen_id.problem(number) is not None:
        return None
    return citizen_id.birth_date(number)


def _birth_for(rule: Any, answer: str | None, today: dt.date) -> dt.date | None:
    """A birth date in the age bracket the resident declared (the rules engine reads ages from birth
    dates): exactly the rule's age for "已满/不超过", a day short or over for the other."""
    if answer not in (YES, NO):
        return None
    boundary = (
        today.replace(year=today.year - rule.value)
        if (today.month, today.day) != (2, 29)
        else (today - dt.timedelta(days=1)).replace(year=today.year - rule.value)
    )
    if isinstance(rule, AgeAtLeast):
        return boundary if answer == YES else boundary + dt.timedelta(days=1)
    return boundary if answer == YES else boundary.replace(year=boundary.year - 1)


class GovConditionsGuide:
    """What the assistant asks and concludes about an item's conditions (``bot.walkthrough``)."""

    async def _item(self, session: AsyncSession, code: str) -> CatalogueItem | None:
        try:
            return (await catalogue_store.get_item(session, code=code))[1]
        except ItemNotFound:
            return None

    async def questions(
        self, code: str, *, account_id: str | None, session: AsyncSession
    ) -> dict[str, Any] | None:
        """``{code, name, known: [text], questions: [{key, text, options: [{title, value}],
        number?}]}``: only what the resident's verified data does not answer. None: no such item."""
        item = await self._item(session, code)
        if item is None:
            return None
        birth = await _verified_birth(session, account_id)
        known: list[str] = []
        asked: list[dict[str, Any]] = []
        for rule in item.rules:
            if isinstance(rule, AgeAtLeast | AgeAtMost) and birth is not None:
                known.append(rule.explain)
                continue
            asked.append(_rule_question(rule))
        if not item.rules:
            for n, text in enumerate(item.conditions, start=1):
                asked.append(
                    {
                        "key": f"cond:{n}",
                        "text": f"您是否符合这一条件：{text}？",
                        "options": _yes_no("符合", "不符合"),
                    }
                )
        hukou = any(isinstance(r, HukouIn) for r in item.rules)
        for n, m in enumerate(item.materials):
            if not m.condition:
                continue
            if hukou and _derived_material(m.condition, True) is not None:
                continue  # the household question decides it
            asked.append(
                {
                    "key": f"mat:{n}",
                    "text": f"您是否属于这种情况：{m.condition}？",
                    "options": [{"title": "是", "value": YES}, {"title": "不是", "value": NO}],
                }
            )
        return {"code": item.code, "name": item.name, "known": known, "questions": asked}

    async def assess(
        self, code: str, *, account_id: str | None, answers: dict[str, str], session: AsyncSession
    ) -> dict[str, Any] | None:
        """The verdict on ``answers`` (question key → option value or number): ``{code, name,
        verdict: "met" | "unmet" | "review", checks: [{explain, status, reason, hard, source,
        condition, condition_text}],
        review: [text], materials: [name], fields: {key: value}}``. None: no such item."""
        item = await self._item(session, code)
        if item is None:
            return None
        birth = await _verified_birth(session, account_id)
        facts, fields = self._facts(item, answers, birth)
        checked = evaluate(item.rules, item.conditions, facts)
        checks: list[dict[str, Any]] = []
        for rule, r in zip(item.rules, checked.results, strict=True):
            declared = f"rule:{rule.id}" in answers and not (
                isinstance(rule, AgeAtLeast | AgeAtMost) and birth
            )
            reason = r.reason
            if declared and r.status != UNKNOWN:
                reason = "根据您的回答" + ("，符合" if r.status == MET else "，不符合")
            elif r.status == UNKNOWN:
                reason = "您不确定或无法核实，需工作人员审核"
            n = rule.condition
            checks.append(
                {
                    "explain": r.explain,
                    "status": r.status,
                    "reason": reason,
                    "hard": r.hard,
                    "source": "declared" if declared else "registry",
                    # The listed condition the rule checks (1 = the first), and its text.
                    "condition": n,
                    "condition_text": item.conditions[n - 1] if n and n <= len(item.conditions) else None,
                }
            )
        review: list[str] = []
        unmet_declared = False
        if item.rules:
            review = [text for _, text in checked.manual]
        else:
            for n, text in enumerate(item.conditions, start=1):
                a = answers.get(f"cond:{n}")
                status = MET if a == YES else UNMET if a == NO else UNKNOWN
                unmet_declared = unmet_declared or status == UNMET
                checks.append(
                    {
                        "explain": text,
                        "status": status,
                        "hard": True,
                        "source": "declared",
                        "condition": n,
                        "condition_text": text,
                        "reason": {
                            MET: "根据您的回答，符合",
                            UNMET: "根据您的回答，不符合",
                            UNKNOWN: "您不确定，需工作人员审核",
                        }[status],
                    }
                )
            # Listed conditions are declared, never checked here: a reviewer confirms them.
            review = [
                text for n, text in enumerate(item.conditions, start=1) if answers.get(f"cond:{n}") == YES
            ]
        if checked.blocking or unmet_declared:
            verdict = UNMET
        elif checked.fully_met and not review and all(c["status"] == MET for c in checks):
            verdict = MET
        else:
            verdict = "review"
        household_in = self._household_in(item, answers)
        materials = []
        for n, m in enumerate(item.materials):
            if not m.condition:
                materials.append(m.name)
                continue
            derived = _derived_material(m.condition, household_in)
            if derived if derived is not None else answers.get(f"mat:{n}") == YES:
                materials.append(m.name)
        return {
            "code": item.code,
            "name": item.name,
            "verdict": verdict,
            "checks": checks,
            "review": review,
            "materials": materials,
            "fields": fields,
        }

    def _household_in(self, item: CatalogueItem, answers: dict[str, str]) -> bool | None:
        for rule in item.rules:
            if isinstance(rule, HukouIn) and answers.get(f"rule:{rule.id}") in (YES, NO):
                return answers[f"rule:{rule.id}"] == YES
        return None

    def _facts(
        self, item: CatalogueItem, answers: dict[str, str], birth: dt.date | None
    ) -> tuple[Facts, dict[str, str]]:
        base = Facts()
        today = base.today
        household: str | None = None
        ecerts: set[str] = set()
        checked_certs = False
        form: dict[str, str] = {}
        for rule in item.rules:
            a = answers.get(f"rule:{rule.id}")
            if isinstance(rule, AgeAtLeast | AgeAtMost):
                birth = birth or _birth_for(rule, a, today)
            elif isinstance(rule, HukouIn) and a in (YES, NO):
                household = rule.value if a == YES else ELSEWHERE
            elif isinstance(rule, EcertHeld) and a in (YES, NO):
                checked_certs = True
                if a == YES:
                    ecerts.add(rule.cert)
            elif isinstance(rule, RelationshipIn | FieldIn) and a:
                form[rule.field] = "其他" if a == OTHER else a
            elif isinstance(rule, FieldRange) and a:
                with contextlib.suppress(InvalidOperation):
                    form[rule.field] = str(Decimal(a))
        facts = Facts(
            birth_date=birth,
            household=household,
            ecerts=frozenset(ecerts),
            certificates_checked=checked_certs,
            form=form,
            today=today,
        )
        # Only what the resident may type goes into the draft: record fields come from the records.
        fields = {k: v for k, v in form.items() if k not in RECORD_FIELDS}
        return facts, fields

    async def draft(
        self,
        code: str,
        *,
        account_id: str,
        answers: dict[str, str],
        client_key: str,
        session: AsyncSession,
    ) -> dict[str, Any]:
        """The resident's application draft with the walk-through's answers: typed fields filled,
        the answers and the materials that apply on its timeline. Idempotent on ``client_key``.
        ``{id, number, deep_link}``; refusals (identity level, item withdrawn) are ``AppError``."""
        account = await session.get(Account, account_id)
        if account is None:
            raise ItemNotFound("账号不存在")
        principal = Principal.of(account)
        assessed = await self.assess(code, account_id=account_id, answers=answers, session=session)
        if assessed is None:
            raise ItemNotFound()
        app, created = await applications.create_application(
            session, principal=principal, item_code=code, client_key=client_key
        )
        if created:
            if assessed["fields"]:
                await applications.fill_fields(
                    session, app_id=app.id, principal=principal, fields=assessed["fields"]
                )
            await record_event(
                session,
                app,
                kind="assistant_answers",
                title="智能助手条件核对",
                actor=principal,
                role="resident",
                data={
                    "verdict": assessed["verdict"],
                    "answers": answers,
                    "materials": assessed["materials"],
                },
            )
        return {"id": app.id, "number": app.number, "deep_link": DRAFT_LINK.format(id=app.id)}

    async def discard_draft(self, app_id: str, *, account_id: str, session: AsyncSession) -> str:
        """Remove a walk-through's draft the resident never took up (the assistant's expiry sweep):
        ``"removed"``; ``"kept"`` when it is no longer the untouched draft the walk-through wrote
        (submitted, withdrawn, part of a life event, or changed since: fields, uploads, consents,
        e-certificates, timeline entries); ``"gone"`` when there is no such draft of this resident.
        Idempotent; the application row is locked first, so a submission at the same moment either
        happens before (kept) or finds no draft. Runs in the caller's transaction."""
        locked = (
            select(Application)
            .where(col(Application.id) == app_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        app = (await session.exec(locked)).first()
        if app is None or app.applicant_id != account_id:
            return "gone"
        if (
            app.status != DRAFT
            or app.bundle_id is not None
            or app.consents
            or app.ecerts
            or app.delivery is not None
        ):
            return "kept"
        for model in (Upload, FeePayment):
            taken = select(model.id).where(col(model.application_id) == app_id).limit(1)
            if (await session.exec(taken)).first() is not None:
                return "kept"
        events = (await session.exec(select(Event).where(col(Event.application_id) == app_id))).all()
        handed = max((e.at for e in events if e.kind == "assistant_answers"), default=None)
        if (
            handed is None  # not a draft the walk-through wrote
            or app.updated_at > handed
            or any(e.kind not in _CREATION_EVENTS or e.at > handed for e in events)
        ):
            return "kept"
        await session.exec(delete(Event).where(col(Event.application_id) == app_id))
        await session.exec(delete(Warning_).where(col(Warning_.application_id) == app_id))
        await session.delete(app)
        await session.flush()
        return "removed"


def provide_guide(column: Column | None = None) -> None:
    """Offer the walk-through's capability: through ``column`` when the column's ``_provide`` calls
    this (the loader registers it with the column's others), else directly."""
    from app_api.platform.capabilities import ConditionsGuide, provide

    guide = GovConditionsGuide()
    if column is not None:
        column.provide(ConditionsGuide, guide)
    else:
        provide(ConditionsGuide, guide)
