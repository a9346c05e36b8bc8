"""Fee rules (收费规则): what an item version charges, as declarative data stored with the version.

A fee is one JSON object validated here (a discriminated union on ``kind``), never Python per item:

- ``{"kind": "fixed", "amount_fen": 2000}``: a fixed amount (身份证换领 20 元);
- ``{"kind": "per_unit", "field": "property.extra_certs", "label": "加发证书本数", "unit_fen": 1000,
  "base_fen": 8000, "max_units": 20}``: ``base_fen`` + ``unit_fen`` x a numeric form field;
- ``{"kind": "table", "field": "property.use", "label": "不动产用途", "amounts": {"住宅": 8000,
  "非住宅": 55000}}``: the amount by a form field's value (``default_fen`` for any other value).

``charge_at`` says when the order is opened: ``submit`` (the resident pays before the application
reaches the department) or ``accept`` (the reviewer accepts, then the resident pays). An amount of
0 charges nothing. A fee the form does not let us compute (a field missing, not a number, a value
the table does not know) is a :class:`FeeNotComputable` with the Chinese reason. Everything here is
pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

FIELD_KEY = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$"
MAX_FEE_FEN = 100_000_000


class FeeNotComputable(ValueError):
    """The form lacks what the fee rule needs; ``str(exc)`` is the Chinese reason."""


class _Fee(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # When the payment order is opened: at submission, or when the reviewer accepts.
    charge_at: Literal["submit", "accept"] = "submit"


class FixedFee(_Fee):
    kind: Literal["fixed"]
    amount_fen: int = Field(ge=1, le=MAX_FEE_FEN, title="金额（分）")


class PerUnitFee(_Fee):
    kind: Literal["per_unit"]
    field: str = Field(pattern=FIELD_KEY, title="字段")
    label: str = Field(min_length=1, max_length=30, title="字段名称")
    unit_fen: int = Field(ge=1, le=MAX_FEE_FEN, title="单价（分）")
    base_fen: int = Field(default=0, ge=0, le=MAX_FEE_FEN, title="基础金额（分）")
    min_units: int = Field(default=0, ge=0, le=100_000)
    max_units: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _bounds(self) -> PerUnitFee:
        if self.min_units > self.max_units:
            raise ValueError("数量下限不能大于上限")
        if self.base_fen + self.unit_fen * self.max_units > MAX_FEE_FEN:
            raise ValueError("按数量计费的最高金额超出上限")
        return self


class TableFee(_Fee):
    kind: Literal["table"]
    field: str = Field(pattern=FIELD_KEY, title="字段")
    label: str = Field(min_length=1, max_length=30, title="字段名称")
    amounts: dict[str, int] = Field(min_length=1, max_length=50, title="各取值金额（分）")
    default_fen: int | None = Field(default=None, ge=0, le=MAX_FEE_FEN)

    @model_validator(mode="after")
    def _amounts(self) -> TableFee:
        bad = [k for k, v in self.amounts.items() if not k.strip() or v < 0 or v > MAX_FEE_FEN]
        if bad:
            raise ValueError(f"收费标准表的取值或金额不正确：{'、'.join(bad) or '（空）'}")
        return self


Fee = Annotated[FixedFee | PerUnitFee | TableFee, Field(discriminator="kind")]
_FEE: TypeAdapter[FixedFee | PerUnitFee | TableFee] = TypeAdapter(Fee)
KINDS = ("fixed", "per_unit", "table")


def parse_fee(raw: Any) -> FixedFee | PerUnitFee | TableFee:
    return _FEE.validate_python(raw)


def fee_problems(raw: Any) -> list[str]:
    """Every problem of a fee rule as Chinese text ("收费规则…"), or none."""
    if not isinstance(raw, Mapping):
        return ["收费规则应为一个 JSON 对象"]
    if raw.get("kind") not in KINDS:
        return [f"收费规则的类型应为 {'、'.join(KINDS)} 之一，实际为“{raw.get('kind')}”"]
    try:
        parse_fee(raw)
    except ValidationError as e:
        out = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"][1:]) or "整体"
            out.append(f"收费规则的 {where}：{str(err['msg']).removeprefix('Value error, ')}")
        return out
    return []


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def amount_fen(fee: FixedFee | PerUnitFee | TableFee, form: Mapping[str, Any]) -> int:
    """The fee of an application with this form; raises :class:`FeeNotComputable`."""
    if isinstance(fee, FixedFee):
        return fee.amount_fen
    raw = _text(form.get(fee.field))
    if raw is None:
        raise FeeNotComputable(f"请填写{fee.label}，以便计算应缴费用")
    if isinstance(fee, TableFee):
        if raw in fee.amounts:
            return fee.amounts[raw]
        if fee.default_fen is not None:
            return fee.default_fen
        raise FeeNotComputable(f"{fee.label}“{raw}”不在收费标准中，可选：{'、'.join(fee.amounts)}")
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise FeeNotComputable(f"{fee.label}“{raw}”不是数值") from None
    if number != number.to_integral_value():
        raise FeeNotComputable(f"{fee.label}应为整数，实际为{raw}")
    units = int(number)
    if units < fee.min_units or units > fee.max_units:
        raise FeeNotComputable(f"{fee.label}应在{fee.min_units}到{fee.max_units}之间，实际为{units}")
    return fee.base_fen + fee.unit_fen * units


def fee_fields(fee: FixedFee | PerUnitFee | TableFee | None) -> list[str]:
    """The form fields a fee rule reads (the resident fills them before submitting)."""
    if fee is None or isinstance(fee, FixedFee):
        return []
    return [fee.field]
