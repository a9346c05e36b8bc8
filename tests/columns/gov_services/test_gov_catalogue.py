"""The shipped catalogue: complete guides, and the rules every item must keep."""

import pytest
from pydantic import ValidationError

from columns.gov_services.catalogue import ITEM_TYPES, CatalogueItem, seed_catalogue

REQUIRED_NAMES = [
    "老年人优待证办理",
    "生育服务登记",
    "流动人口婚育证明",
    "无犯罪记录证明",
    "个体工商户设立登记",
    "食品经营许可",
    "居住证办理",
    "不动产首次登记（新建商品房）",
    "住房公积金提取（购买自住住房）",
    "高龄津贴申领",
    "残疾人证新办",
]


def test_seed_has_complete_guides_for_the_items_residents_ask_for() -> None:
    cat = seed_catalogue()
    assert len(cat.items) >= 40
    names = {i.name for i in cat.items}
    assert set(REQUIRED_NAMES) <= names
    assert {i.item_type for i in cat.items} == set(ITEM_TYPES)
    assert len({i.department for i in cat.items}) >= 15
    for item in cat.items:
        assert item.legal_basis and item.conditions and item.steps and item.synonyms, item.code
        assert item.materials, item.code
        assert item.promised_days <= item.statutory_days
        if not item.fully_online:
            assert item.where_to_go and item.office_hours, item.code
    # Money in fen: the only fees are the real ones (身份证 20元, 驾驶证 10元, 不动产登记 80元).
    fees = {i.name: i.fee_fen for i in cat.items if i.fee_fen}
    assert fees["居民身份证换领（有效期满）"] == 2000
    assert fees["不动产转移登记（二手房买卖）"] == 8000


def test_seed_offers_prefill_and_ecert_substitutes() -> None:
    old_age = next(i for i in seed_catalogue().items if i.name == "老年人优待证办理")
    id_card = next(m for m in old_age.materials if m.ecert == "居民身份证")
    assert "person.id_number" in id_card.fill_fields
    assert old_age.consent_groups == ["person", "certificate"]
    assert old_age.result.ecert == "老年人优待证" and old_age.result.paper
    shop = next(i for i in seed_catalogue().items if i.name == "食品经营许可")
    assert "legal_person" in shop.consent_groups


def _base() -> dict:
    return seed_catalogue().items[0].model_dump(mode="json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"promised_days": 30, "statutory_days": 10}, "承诺时限不能超过法定时限"),
        ({"fee_fen": 1000, "fee_basis": None}, "收费依据"),
        ({"code": "bad code"}, "事项编码"),
        ({"item_type": "行政处罚"}, "item_type"),
        ({"contact_phone": "call me"}, "电话号码"),
        ({"handling_mode": "最多跑一次", "max_visits": 1, "where_to_go": None}, "办理地点"),
    ],
)
def test_item_rules_refuse_bad_guides(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CatalogueItem.model_validate(_base() | change)


def test_unknown_ecert_or_record_field_is_refused() -> None:
    data = _base()
    data["materials"][0] = data["materials"][0] | {"ecert": "月球护照"}
    with pytest.raises(ValidationError, match="未知的电子证照类型"):
        CatalogueItem.model_validate(data)
    data = _base()
    data["materials"][0] = data["materials"][0] | {"fill_fields": ["person.salary"]}
    with pytest.raises(ValidationError, match="未知的回填字段"):
        CatalogueItem.model_validate(data)
