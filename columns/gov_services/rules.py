"""Machine-checkable conditions (受理条件规则): a small declarative form stored with the item version.

An item's guide states its conditions in prose; an administrator may add rules that check them
over what the application knows: the registry data filled with the resident's consent (birth date,
household registration), the e-certificates attached by reference, and form fields. A rule is
data, not code (one JSON object, validated here as a discriminated union on ``kind``), e.g.
``{"id": "age", "kind": "age_at_least", "value": 60, "hard": true, "condition": 1,
"explain": "申请人须年满60周岁"}``.

Each rule evaluates to ``met``, ``unmet`` (with the Chinese reason) or ``unknown`` when the data it
needs is missing: unknown is never counted as passed, it means a reviewer decides. An unmet hard
rule blocks submission; an unmet soft one only warns. ``condition`` names the prose condition (1 =
the first) a rule checks; a condition no rule checks is left to a reviewer. Everything here is pure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from app_api.core.clock import china_today

MET = "met"
UNMET = "unmet"
UNKNOWN = "unknown"
MANUAL_REASON = "需人工审核"

FIELD_KEY = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", title="规则编号")
    hard: bool = True
    explain: str = Field(min_length=2, max_length=200, title="规则说明")
    # The prose condition (1 = the first of the guide's conditions) this rule checks.
    condition: int | None = Field(default=None, ge=1, le=50, title="对应条件序号")


class AgeAtLeast(_Rule):
    kind: Literal["age_at_least"]
    value: int = Field(ge=0, le=150, title="年龄")


class AgeAtMost(_Rule):
    kind: Literal["age_at_most"]
    value: int = Field(ge=0, le=150, title="年龄")


class HukouIn(_Rule):
    """Household registration (户籍) in a place, e.g. ``亳州市`` or ``亳州市谯城区``."""

    kind: Literal["hukou_in"]
    value: str = Field(min_length=2, max_length=40, title="户籍地")


class RelationshipIn(_Rule):
    """The applicant's relationship to the person concerned (本人, 配偶, 子女, 父母 ...)."""

    kind: Literal["relationship_in"]
    field: str = Field(default="applicant.relationship", pattern=FIELD_KEY, title="字段")
    values: tuple[str, ...] = Field(min_length=1, max_length=20, title="可选关系")


class EcertHeld(_Rule):
    """An e-certificate of this type is attached by reference (from the e-certificate library)."""

    kind: Literal["ecert_held"]
    cert: str = Field(min_length=2, max_length=40, title="电子证照")

    @model_validator(mode="after")
    def _known(self) -> EcertHeld:
        from columns.gov_services.catalogue import ECERT_TYPES

        if self.cert not in ECERT_TYPES:
            raise ValueError(f"未知的电子证照类型：{self.cert}")
        return self


class FieldIn(_Rule):
    kind: Literal["field_in"]
    field: str = Field(pattern=FIELD_KEY, title="字段")
    label: str = Field(min_length=1, max_length=30, title="字段名称")
    values: tuple[str, ...] = Field(min_length=1, max_length=50, title="可选值")


class FieldRange(_Rule):
    kind: Literal["field_range"]
    field: str = Field(pattern=FIELD_KEY, title="字段")
    label: str = Field(min_length=1, max_length=30, title="字段名称")
    min: Decimal | None = None
    max: Decimal | None = None

    @model_validator(mode="after")
    def _bounds(self) -> FieldRange:
        if self.min is None and self.max is None:
            raise ValueError("数值范围至少要有下限或上限")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("下限不能高于上限")
        return self


Rule = Annotated[
    AgeAtLeast | AgeAtMost | HukouIn | RelationshipIn | EcertHeld | FieldIn | FieldRange,
    Field(discriminator="kind"),
]
RULES = TypeAdapter(tuple[Rule, ...])
KINDS: dict[str, str] = {
    "age_at_least": "年龄下限",
    "age_at_most": "年龄上限",
    "hukou_in": "户籍所在地",
    "relationship_in": "申请人关系",
    "ecert_held": "持有电子证照",
    "field_in": "字段取值",
    "field_range": "数值范围",
}


RULE = TypeAdapter(Rule)


def rule_problems(raw: Sequence[Any]) -> list[str]:
    """Chinese reasons why the rules in ``raw`` (parsed JSON) are malformed, one per problem."""
    from pydantic import ValidationError

    from app_api.core.validation_zh import chinese_errors

    problems: list[str] = []
    for n, item in enumerate(raw, start=1):
        name = f"第{n}条规则" + (f"（{item['id']}）" if isinstance(item, dict) and item.get("id") else "")
        try:
            RULE.validate_python(item)
        except ValidationError as e:
            for err in e.errors():
                if err["type"] == "union_tag_invalid":
                    tag = (err.get("ctx") or {}).get("tag", "")
                    problems.append(f"{name}：规则类型“{tag}”无法识别，可用：{'、'.join(KINDS)}")
                    continue
                if err["type"] == "union_tag_not_found":
                    problems.append(f"{name}：缺少规则类型 kind")
                    continue
                if err["type"] == "model_attributes_type" or not err["loc"]:
                    problems.append(f"{name}：应为 JSON 对象")
                    continue
                rest = {**err, "loc": err["loc"][1:]}
                if rest["loc"]:
                    msg = chinese_errors([rest])[0]["msg"].strip()
                else:
                    msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{name}：{msg}")
    return problems


def check_rules(rules: Sequence[Any], *, conditions: int, ecerts: set[str]) -> None:
    """Rules against the item they belong to: unique ids, conditions that exist, e-certificates
    the item's materials attach. Raises ``ValueError`` with a Chinese message."""
    seen: set[str] = set()
    for n, r in enumerate(rules, start=1):
        if r.id in seen:
            raise ValueError(f"第{n}条规则：规则编号 {r.id} 重复")
        seen.add(r.id)
        if r.condition is not None and r.condition > conditions:
            raise ValueError(f"第{n}条规则：对应条件序号 {r.condition} 超出受理条件数（{conditions}条）")
        if isinstance(r, EcertHeld) and r.cert not in ecerts:
            raise ValueError(f"第{n}条规则：所需电子证照“{r.cert}”不在本事项的申请材料中")


def record_fields(rules: Sequence[Any]) -> set[str]:
    """Registry fields the rules read, so one-tap filling fetches them (with the same consent)."""
    needed: set[str] = set()
    for r in rules:
        if isinstance(r, AgeAtLeast | AgeAtMost):
            needed.add("person.birth_date")
        elif isinstance(r, HukouIn):
            needed.add("person.household")
    return needed


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Facts:
    """What is known about the applicant when the rules run. ``None`` / absent means not known."""

    birth_date: dt.date | None = None
    household: str | None = None
    # E-certificate types attached by reference, and whether the library was consulted at all.
    ecerts: frozenset[str] = frozenset()
    certificates_checked: bool = False
    form: Mapping[str, Any] = field(default_factory=dict)
    today: dt.date = field(default_factory=china_today)


@dataclass(frozen=True)
class RuleResult:
    id: str
    kind: str
    hard: bool
    condition: int | None
    explain: str
    status: str
    reason: str


@dataclass(frozen=True)
class Eligibility:
    results: tuple[RuleResult, ...]
    # Prose conditions no rule checks: (number, text), decided by a reviewer.
    manual: tuple[tuple[int, str], ...]

    @property
    def blocking(self) -> list[RuleResult]:
        return [r for r in self.results if r.hard and r.status == UNMET]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if not r.hard and r.status == UNMET]

    @property
    def fully_met(self) -> bool:
        """Every condition is checked by a rule and every rule is met: nothing left to a person."""
        return not self.manual and all(r.status == MET for r in self.results)

    def record(self) -> list[dict[str, Any]]:
        """The outcome as stored with the application: which rules passed, which did not. The
        reasons quote personal data (age, household) and are shown live, not stored in clear."""
        return [
            {"id": r.id, "kind": r.kind, "hard": r.hard, "status": r.status, "explain": r.explain}
            for r in self.results
        ]


def age_on(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _evaluate(rule: Any, facts: Facts) -> tuple[str, str]:
    if isinstance(rule, AgeAtLeast | AgeAtMost):
        if facts.birth_date is None:
            return UNKNOWN, f"未取得出生日期，{MANUAL_REASON}"
        age = age_on(facts.birth_date, facts.today)
        if isinstance(rule, AgeAtLeast):
            if age >= rule.value:
                return MET, f"您今年{age}周岁，已满{rule.value}周岁"
            return UNMET, f"您今年{age}周岁，未满{rule.value}周岁"
        if age <= rule.value:
            return MET, f"您今年{age}周岁，未超过{rule.value}周岁"
        return UNMET, f"您今年{age}周岁，超过{rule.value}周岁"
    if isinstance(rule, HukouIn):
        if not facts.household:
            return UNKNOWN, f"未取得户籍信息（可授权调取人口库信息），{MANUAL_REASON}"
        if rule.value in facts.household:
            return MET, f"您的户籍在{facts.household}，属于{rule.value}"
        return UNMET, f"您的户籍在{facts.household}，不在{rule.value}"
    if isinstance(rule, EcertHeld):
        if rule.cert in facts.ecerts:
            return MET, f"已关联您的电子证照“{rule.cert}”"
        if facts.certificates_checked:
            return UNMET, f"电子证照库中没有您的{rule.cert}"
        return UNKNOWN, f"未授权调取电子证照，无法核验{rule.cert}，{MANUAL_REASON}"
    if isinstance(rule, RelationshipIn | FieldIn):
        label = rule.label if isinstance(rule, FieldIn) else "与当事人的关系"
        value = _text(facts.form.get(rule.field))
        if value is None:
            return UNKNOWN, f"未填写{label}，{MANUAL_REASON}"
        if value in rule.values:
            return MET, f"{label}为“{value}”"
        return UNMET, f"{label}为“{value}”，须为{'、'.join(rule.values)}之一"
    assert isinstance(rule, FieldRange)
    raw = _text(facts.form.get(rule.field))
    if raw is None:
        return UNKNOWN, f"未填写{rule.label}，{MANUAL_REASON}"
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return UNKNOWN, f"{rule.label}“{raw}”不是数值，{MANUAL_REASON}"
    if rule.min is not None and number < rule.min:
        return UNMET, f"{rule.label}为{raw}，低于{rule.min}"
    if rule.max is not None and number > rule.max:
        return UNMET, f"{rule.label}为{raw}，高于{rule.max}"
    return MET, f"{rule.label}为{raw}，在规定范围内"


def evaluate(rules: Sequence[Any], conditions: Sequence[str], facts: Facts) -> Eligibility:
    results = []
    for rule in rules:
        status, reason = _evaluate(rule, facts)
        results.append(
            RuleResult(
                id=rule.id,
                kind=rule.kind,
                hard=rule.hard,
                condition=rule.condition,
                explain=rule.explain,
                status=status,
                reason=reason,
            )
        )
    covered = {r.condition for r in rules if r.condition is not None}
    manual = tuple((n, text) for n, text in enumerate(conditions, start=1) if n not in covered)
    return Eligibility(results=tuple(results), manual=manual)
