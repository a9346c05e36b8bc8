"""Search quality: what residents type, and the item they mean."""

from functools import lru_cache

import pytest

from columns.gov_services.catalogue import seed_catalogue
from columns.gov_services.generator import generate_catalogue
from columns.gov_services.search import CatalogueIndex, build_index

# (query, expected item code). Names, everyday words, pinyin initials, full pinyin, homophone
# typos, full-width input and whole sentences.
QUERIES = [
    ("lnz", "BZ-MZ-001"),
    ("老年证", "BZ-MZ-001"),
    ("老年正", "BZ-MZ-001"),
    ("laonianzheng", "BZ-MZ-001"),
    ("ＬＮＺ", "BZ-MZ-001"),
    ("准生证", "BZ-WJ-001"),
    ("生育登记", "BZ-WJ-001"),
    ("婚育证明", "BZ-WJ-002"),
    ("外出打工开婚育证明", "BZ-WJ-002"),
    ("良民证", "BZ-GA-001"),
    ("无犯罪证明", "BZ-GA-001"),
    ("wfzjlzm", "BZ-GA-001"),
    ("暂住证", "BZ-GA-002"),
    ("jzz", "BZ-GA-002"),
    ("身份证到期了怎么办", "BZ-GA-003"),
    ("孩子上户口", "BZ-GA-004"),
    ("迁户口", "BZ-GA-005"),
    ("驾照到期", "BZ-JJ-001"),
    ("车辆年审", "BZ-JJ-002"),
    ("领结婚证", "BZ-MZ-003"),
    ("低保", "BZ-MZ-004"),
    ("临时救助", "BZ-MZ-005"),
    ("两项补贴", "BZ-MZ-006"),
    ("残疾证", "BZ-CL-001"),
    ("办个体户营业执照", "BZ-SJ-001"),
    ("开饭店要什么许可", "BZ-SJ-002"),
    ("食品经营许可正", "BZ-SJ-002"),
    ("注册公司", "BZ-SJ-003"),
    ("开药店", "BZ-SJ-004"),
    ("电梯登记", "BZ-SJ-005"),
    ("新农保", "BZ-RS-001"),
    ("领养老金", "BZ-RS-002"),
    ("失业金", "BZ-RS-003"),
    ("社保卡", "BZ-RS-005"),
    ("办退休", "BZ-RS-006"),
    ("异地就医备案", "BZ-YB-001"),
    ("新农合", "BZ-YB-002"),
    ("慢性病", "BZ-YB-003"),
    ("买房提取公积金", "BZ-GJJ-001"),
    ("公积金 租房", "BZ-GJJ-002"),
    ("我退休了想把公积金取出来", "BZ-GJJ-003"),
    ("公积金贷款", "BZ-GJJ-004"),
    ("房产证", "BZ-ZG-001"),
    ("二手房过户", "BZ-ZG-002"),
    ("无房证明", "BZ-ZG-004"),
    ("施工许可证", "BZ-ZJ-001"),
    ("消防验收", "BZ-ZJ-003"),
    ("公租房", "BZ-ZJ-004"),
    ("一年级报名", "BZ-JY-001"),
    ("教资认定", "BZ-JY-002"),
    ("免费律师", "BZ-SF-001"),
    ("退伍军人优待证", "BZ-TY-001"),
    ("排污许可证", "BZ-HB-001"),
    ("高龄补贴", "BZ-MZ-002"),
    ("gljt", "BZ-MZ-002"),
    ("火化补贴", "BZ-MZ-007"),
]


@lru_cache
def seed_index() -> CatalogueIndex:
    return build_index(i.search_row() for i in seed_catalogue().items)


@lru_cache
def city_index() -> CatalogueIndex:
    return build_index(i.search_row() for i in generate_catalogue(7_000).items)


def test_query_table_is_large_and_covers_the_catalogue() -> None:
    assert len(QUERIES) >= 40
    assert len({code for _, code in QUERIES}) >= 40


@pytest.mark.parametrize(("query", "code"), QUERIES)
def test_expected_item_comes_first(query: str, code: str) -> None:
    hits = seed_index().search(query, limit=5)
    assert hits, f"{query!r} found nothing"
    assert hits[0].code == code, [(h.name, h.score, h.matched) for h in hits]


@pytest.mark.parametrize(("query", "code"), QUERIES[::5])
def test_city_catalogue_still_finds_the_item(query: str, code: str) -> None:
    # In the 7,000-item catalogue the same guide exists per unit and variant; the first hit is one
    # of them (code prefix), not a different service.
    hits = city_index().search(query, limit=5)
    assert hits and hits[0].code.startswith(code + "-"), [(h.code, h.name, h.score) for h in hits]


def test_department_and_type_filters() -> None:
    idx = seed_index()
    hits = idx.search("证", department="谯城区公安分局", limit=20)
    assert hits and {seed_catalogue().item(h.code).department for h in hits} == {"谯城区公安分局"}
    hits = idx.search("许可", item_type="行政许可", limit=20)
    assert len(hits) >= 5
    assert {seed_catalogue().item(h.code).item_type for h in hits} == {"行政许可"}
    # A filter that excludes the item a query means gives nothing rather than a wrong item.
    assert idx.search("lnz", department="亳州市生态环境局") == []
    # No words: browse the filtered catalogue.
    browse = idx.search("", item_type="行政给付", limit=50)
    assert len(browse) == sum(1 for i in seed_catalogue().items if i.item_type == "行政给付")


@pytest.mark.parametrize("query", ["天气怎么样", "今天吃什么", "帮我订机票", "xqzq", "！！！", "   "])
def test_unrelated_input_finds_nothing_confident(query: str) -> None:
    hits = seed_index().search(query)
    assert all(h.score < 80 for h in hits), [(h.name, h.score) for h in hits]


def test_a_guide_repeated_in_every_unit_is_scored_once_and_ranked_by_code() -> None:
    """The same guide implemented by 600 units (as in a city catalogue): a department's own copy is
    found through the department filter however many other units hold the guide, and without a
    filter the copies come in code order after the better-scored items."""
    rows = [
        {
            "code": f"LN-{n:04d}",
            "name": "老年人优待证办理",
            "department": f"第{n}便民服务站",
            "synonyms": ["老年证"],
        }
        for n in range(600)
    ]
    rows.append({"code": "LN-EXACT", "name": "老年证", "department": "第9999便民服务站", "synonyms": []})
    idx = build_index(rows)
    assert idx.groups == 2 and len(idx) == 601
    hits = idx.search("老年证", limit=5)
    assert [h.code for h in hits] == ["LN-EXACT", "LN-0000", "LN-0001", "LN-0002", "LN-0003"]
    assert hits[1].score == hits[4].score and hits[1].matched == "老年证"
    (own,) = idx.search("老年证", department="第417便民服务站")
    assert own.code == "LN-0417" and own.name == "老年人优待证办理"
    assert idx.search("老年证", department="没有的部门") == []
