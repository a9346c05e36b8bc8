"""The service-item catalogue (事项目录): one validated shape for seed data, imports and the database.

An item is the published guide (办事指南) of one government service: who may apply, what to bring,
how long it takes, what it costs, where to go. Everything here is pure (no database): the seed file,
the XLSX/CSV importer, the search index and the models all go through :class:`CatalogueItem`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from columns.gov_services.fees import Fee, FixedFee
from columns.gov_services.rules import Rule, check_rules

DATA_DIR = Path(__file__).parent / "data"
SEED_FILE = DATA_DIR / "items.json"

ITEM_TYPES: tuple[str, ...] = (
    "行政许可",
    "行政确认",
    "行政给付",
    "行政备案",
    "审核转报",
    "行政验收",
    "行政年检",
    "公共服务",
)
LEVELS: tuple[str, ...] = ("市", "县区", "乡镇")
APPLICANTS: tuple[str, ...] = ("个人", "企业")
HANDLING_MODES: tuple[str, ...] = ("全程网办", "在线预约", "最多跑一次")
DELIVERY_MODES: tuple[str, ...] = ("免费邮寄", "窗口领取", "电子送达")

ItemType = Literal[
    "行政许可", "行政确认", "行政给付", "行政备案", "审核转报", "行政验收", "行政年检", "公共服务"
]
Level = Literal["市", "县区", "乡镇"]
Applicant = Literal["个人", "企业"]
HandlingMode = Literal["全程网办", "在线预约", "最多跑一次"]
DeliveryMode = Literal["免费邮寄", "窗口领取", "电子送达"]

# Fields the city data center can fill, by consent group (the part before the dot). A resident
# consents per group: the population record, the legal-person record, the e-certificate library.
RECORD_FIELDS: dict[str, str] = {
    "person.name": "姓名",
    "person.id_number": "公民身份号码",
    "person.gender": "性别",
    "person.birth_date": "出生日期",
    "person.address": "户籍地址",
    "person.household": "户主及与户主关系",
    "person.photo": "证件照片",
    "legal_person.name": "单位名称",
    "legal_person.credit_code": "统一社会信用代码",
    "legal_person.representative": "法定代表人",
    "legal_person.address": "住所",
    "legal_person.business_scope": "经营范围",
}
CONSENT_GROUPS: dict[str, str] = {
    "person": "人口库信息（姓名、身份证号、性别、出生日期、户籍地址等）",
    "legal_person": "法人库信息（单位名称、统一社会信用代码、法定代表人、住所等）",
    "certificate": "电子证照库（以电子证照代替纸质材料）",
}
# E-certificate types held in the city's e-certificate library (电子证照库).
ECERT_TYPES: tuple[str, ...] = (
    "居民身份证",
    "居民户口簿",
    "结婚证",
    "离婚证",
    "出生医学证明",
    "营业执照",
    "食品经营许可证",
    "不动产权证书",
    "不动产登记证明",
    "残疾人证",
    "社会保障卡",
    "机动车驾驶证",
    "机动车行驶证",
    "居住证",
    "老年人优待证",
    "无犯罪记录证明",
    "教师资格证书",
    "退役军人优待证",
    "就业创业证",
    "毕业证书",
    "药品经营许可证",
    "排污许可证",
    "道路运输经营许可证",
    "建设工程规划许可证",
    "建筑工程施工许可证",
    "特种设备使用登记证",
    "流动人口婚育证明",
    "生育服务登记证明",
)

# The data center's e-certificate type codes, by the Chinese name the catalogue uses.
ECERT_CODES: dict[str, str] = {
    "居民身份证": "resident_id_card",
    "居民户口簿": "household_register",
    "结婚证": "marriage_certificate",
    "离婚证": "divorce_certificate",
    "出生医学证明": "birth_certificate",
    "营业执照": "business_license",
    "食品经营许可证": "food_business_license",
    "不动产权证书": "real_estate_certificate",
    "不动产登记证明": "real_estate_registration_proof",
    "残疾人证": "disability_certificate",
    "社会保障卡": "social_security_card",
    "机动车驾驶证": "driving_license",
    "机动车行驶证": "vehicle_license",
    "居住证": "residence_permit",
    "老年人优待证": "senior_citizen_card",
    "无犯罪记录证明": "no_criminal_record",
    "教师资格证书": "teacher_qualification",
    "退役军人优待证": "veteran_card",
    "就业创业证": "employment_card",
    "毕业证书": "graduation_certificate",
    "药品经营许可证": "drug_business_license",
    "排污许可证": "pollutant_discharge_permit",
    "道路运输经营许可证": "road_transport_license",
    "建设工程规划许可证": "construction_planning_permit",
    "建筑工程施工许可证": "construction_permit",
    "特种设备使用登记证": "special_equipment_registration",
    "流动人口婚育证明": "migrant_marital_fertility_proof",
    "生育服务登记证明": "birth_service_registration",
}
# Consent scopes of the data center gateway, per consent group.
CONSENT_SCOPES: dict[str, str] = {
    "person": "population.basic",
    "legal_person": "legal_person",
    "certificate": "certificates",
}

CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,39}$")
PHONE_RE = re.compile(r"^(0[0-9]{2,3}-[0-9]{7,8}|1[0-9]{10}|[0-9]{5})$")


class CatalogueError(ValueError):
    """A catalogue entry that breaks a rule the pydantic types cannot express."""


class Material(BaseModel):
    """One item of 申请材料."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    required: bool = True
    # When set, the material is needed only in this case (e.g. "委托他人代办的").
    condition: str | None = Field(default=None, max_length=200)
    originals: int = Field(default=0, ge=0, le=20)
    copies: int = Field(default=0, ge=0, le=20)
    template: str | None = Field(default=None, max_length=200)
    sample: str | None = Field(default=None, max_length=200)
    ecert: str | None = None
    fill_fields: tuple[str, ...] = ()
    note: str | None = Field(default=None, max_length=500)

    @field_validator("ecert")
    @classmethod
    def _known_ecert(cls, value: str | None) -> str | None:
        if value is not None and value not in ECERT_TYPES:
            raise ValueError(f"未知的电子证照类型：{value}")
        return value

    @field_validator("fill_fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in RECORD_FIELDS]
        if unknown:
            raise ValueError(f"未知的回填字段：{'、'.join(unknown)}")
        return value

    @property
    def consent_groups(self) -> set[str]:
        groups = {f.split(".", 1)[0] for f in self.fill_fields}
        if self.ecert:
            groups.add("certificate")
        return groups


class Step(BaseModel):
    """One step of 办理流程, with its own time limit (电子监察 checks steps and the total)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=30)
    actor: str = Field(min_length=1, max_length=30)
    days: int = Field(default=0, ge=0, le=365)
    description: str | None = Field(default=None, max_length=300)


class Result(BaseModel):
    """What the resident receives (办理结果)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=60)
    # Issued into the e-certificate library on approval, when the item produces one.
    ecert: str | None = None
    # A paper certificate that is posted or picked up.
    paper: bool = False

    @field_validator("ecert")
    @classmethod
    def _known_ecert(cls, value: str | None) -> str | None:
        if value is not None and value not in ECERT_TYPES:
            raise ValueError(f"未知的电子证照类型：{value}")
        return value


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=2, max_length=60)
    level: Level
    address: str
    phone: str
    supervisor_phone: str

    @field_validator("phone", "supervisor_phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        if not PHONE_RE.match(value):
            raise ValueError(f"电话号码格式不正确：{value}")
        return value


class ItemGuide(BaseModel):
    """The fields of an item's guide (办事指南); :class:`CatalogueItem` adds the rules that bind them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str = Field(min_length=2, max_length=80)
    item_type: ItemType
    department: str = Field(min_length=2, max_length=60)
    level: Level
    summary: str = Field(min_length=1, max_length=500)
    legal_basis: tuple[str, ...] = Field(min_length=1)
    applicants: tuple[Applicant, ...] = Field(min_length=1)
    conditions: tuple[str, ...] = Field(min_length=1)
    materials: tuple[Material, ...] = ()
    steps: tuple[Step, ...] = Field(min_length=1)
    fee_fen: int = Field(default=0, ge=0, le=100_000_000)
    fee_basis: str | None = Field(default=None, max_length=300)
    promised_days: int = Field(ge=0, le=365)
    statutory_days: int = Field(ge=0, le=365)
    handling_mode: HandlingMode
    max_visits: int = Field(ge=0, le=2)
    where_to_go: str | None = Field(default=None, max_length=200)
    office_hours: str | None = Field(default=None, max_length=100)
    delivery: tuple[DeliveryMode, ...] = Field(min_length=1)
    result: Result
    contact_phone: str
    consult_phone: str
    identity_level: int = Field(ge=0, le=3)
    synonyms: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # Machine-checkable conditions (:mod:`columns.gov_services.rules`) and instant approval (秒批):
    # approved by the rules at submission, ``instant_sample_percent`` of those sampled for review.
    rules: tuple[Rule, ...] = ()
    instant_approval: bool = False
    instant_sample_percent: int = Field(default=10, ge=0, le=100)
    # The fee actually collected (:mod:`columns.gov_services.fees`), through the payments package;
    # None: nothing is collected online (``fee_fen`` is then only the guide's text).
    fee: Fee | None = None


class CatalogueItem(ItemGuide):
    """One service item and its full guide. Money in fen; time limits in working days."""

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE_RE.match(value):
            raise ValueError("事项编码只能由大写字母、数字和连字符组成（4-40位）")
        return value

    @field_validator("contact_phone", "consult_phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        if not PHONE_RE.match(value):
            raise ValueError(f"电话号码格式不正确：{value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CatalogueItem:
        if self.promised_days > self.statutory_days:
            raise ValueError("承诺时限不能超过法定时限")
        if sum(s.days for s in self.steps) > self.promised_days:
            raise ValueError("各环节时限之和超过承诺时限")
        if self.fee_fen > 0 and not self.fee_basis:
            raise ValueError("收费事项必须写明收费依据")
        if self.fee is not None:
            if self.fee_fen <= 0:
                raise ValueError("收费规则：有收费规则的事项须写明收费标准（元）")
            if isinstance(self.fee, FixedFee) and self.fee.amount_fen != self.fee_fen:
                raise ValueError("收费规则：固定金额与收费标准（元）不一致")
            if self.instant_approval and self.fee.charge_at == "accept":
                # An instant approval has no acceptance to charge at: it would never be collected.
                raise ValueError("秒批事项的费用须在提交时收取（收费规则 charge_at 应为 submit）")
        if self.handling_mode == "全程网办" and self.max_visits != 0:
            raise ValueError("全程网办事项的跑动次数应为0")
        if self.handling_mode != "全程网办" and not self.where_to_go:
            raise ValueError("需要到现场的事项必须写明办理地点")
        names = [m.name for m in self.materials]
        if len(names) != len(set(names)):
            raise ValueError("申请材料名称重复")
        if len(set(self.delivery)) != len(self.delivery):
            raise ValueError("送达方式重复")
        if self.result.paper and not ({"免费邮寄", "窗口领取"} & set(self.delivery)):
            raise ValueError("纸质结果需要邮寄或窗口领取")
        check_rules(
            self.rules, conditions=len(self.conditions), ecerts={m.ecert for m in self.materials if m.ecert}
        )
        if self.instant_approval:
            covered = {r.condition for r in self.rules if r.condition is not None}
            unchecked = [str(n) for n in range(1, len(self.conditions) + 1) if n not in covered]
            if unchecked:
                raise ValueError(f"秒批事项的每项受理条件都须有核验规则，第{'、'.join(unchecked)}项条件没有")
        return self

    @property
    def fully_online(self) -> bool:
        return self.handling_mode == "全程网办"

    @property
    def consent_groups(self) -> list[str]:
        groups: set[str] = set()
        for m in self.materials:
            groups |= m.consent_groups
        return [g for g in CONSENT_GROUPS if g in groups]

    def search_row(self) -> dict[str, Any]:
        """The fields the search index needs (see :mod:`columns.gov_services.search`)."""
        return {
            "code": self.code,
            "name": self.name,
            "department": self.department,
            "item_type": self.item_type,
            "synonyms": list(self.synonyms),
            "keywords": list(self.keywords),
        }


class Catalogue(BaseModel):
    """A whole catalogue: departments and items, with cross-checks between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    departments: tuple[Department, ...]
    items: tuple[CatalogueItem, ...]

    @model_validator(mode="after")
    def _cross(self) -> Catalogue:
        names = {d.name for d in self.departments}
        if len(names) != len(self.departments):
            raise ValueError("部门名称重复")
        codes: set[str] = set()
        for item in self.items:
            if item.department not in names:
                raise ValueError(f"{item.code}：未知的实施部门 {item.department}")
            if item.code in codes:
                raise ValueError(f"事项编码重复：{item.code}")
            codes.add(item.code)
        return self

    def department(self, name: str) -> Department | None:
        return next((d for d in self.departments if d.name == name), None)

    def item(self, code: str) -> CatalogueItem | None:
        return next((i for i in self.items if i.code == code), None)


def load_catalogue(data: Mapping[str, Any]) -> Catalogue:
    return Catalogue.model_validate({k: v for k, v in data.items() if not k.startswith("_")})


@lru_cache
def seed_catalogue() -> Catalogue:
    """The shipped seed: Bozhou-style departments and complete guides for common items."""
    return load_catalogue(json.loads(SEED_FILE.read_text(encoding="utf-8")))


def dump_items(items: Iterable[CatalogueItem]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in items]
