"""Conditions as rules: the resident learns before submitting which conditions they meet and why,
an unmet hard condition blocks submission, missing data is left to a reviewer (never passed), and
a malformed rule is refused at import with its row."""

from __future__ import annotations

import csv
import io
import json

import httpx

from tests.columns.gov_services.conftest import API, make_staff
from tests.columns.gov_services.rules_helpers import born_years_ago, prefilled_draft, resident_born
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"  # 老年人优待证: age >= 60 (hard), household in 亳州市 (soft)
NO_RECORD = "BZ-GA-001"  # 无犯罪记录证明: ID card e-certificate, household in 亳州市 (soft)


def _by_id(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["id"]: c for c in conditions}


async def test_a_38_year_old_is_told_why_before_submitting_and_cannot_submit_the_60_plus_card(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(38))

    # Before any application: from the verified ID number alone.
    resp = await client.get(f"{API}/items/{OLD_AGE}/eligibility", headers=r.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["can_submit"] is False and body["instant_possible"] is False
    age = _by_id(body["conditions"])["age"]
    assert (age["status"], age["hard"], age["reason"]) == ("unmet", True, "您今年38周岁，未满60周岁")
    assert body["blocking"] == ["申请人须年满60周岁：您今年38周岁，未满60周岁"]
    assert _by_id(body["conditions"])["hukou"]["status"] == "unknown"  # no records read yet

    # With a prefilled draft: the records answer the household question too.
    app_id = await prefilled_draft(client, r, OLD_AGE)
    body = (
        await client.get(
            f"{API}/items/{OLD_AGE}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    assert _by_id(body["conditions"])["age"]["reason"] == "您今年38周岁，未满60周岁"
    hukou = _by_id(body["conditions"])["hukou"]
    assert (hukou["status"], hukou["reason"]) == ("met", "您的户籍在亳州市谯城区，属于亳州市")
    assert body["manual"] == []  # each listed condition is checked by a rule ("condition": n)

    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "gov_services.conditions_not_met" and problem["title"] == "不符合申请条件"
    assert problem["reasons"] == ["申请人须年满60周岁：您今年38周岁，未满60周岁"]
    assert (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()["status"] == "draft"

    # Someone else's draft cannot be used to read conditions.
    other = await resident_born(client, login, birth=born_years_ago(70))
    resp = await client.get(
        f"{API}/items/{OLD_AGE}/eligibility", params={"application_id": app_id}, headers=other.headers
    )
    assert resp.status_code == 404


async def test_a_65_year_old_qualifies_and_the_outcome_is_kept_with_the_application(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(65))
    reviewer, _ = await make_staff(client, login, department="谯城区民政局")
    app_id = await prefilled_draft(client, r, OLD_AGE)
    body = (
        await client.get(
            f"{API}/items/{OLD_AGE}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    assert body["can_submit"] is True and body["blocking"] == [] and body["warnings"] == []
    assert _by_id(body["conditions"])["age"]["reason"] == "您今年65周岁，已满60周岁"

    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    done = resp.json()
    # Not an instant-approval item: it waits for the department.
    assert done["status"] == "submitted" and done["instant"] is False
    assert {c["id"]: c["status"] for c in done["conditions"]} == {"age": "met", "hukou": "met"}
    # Kept with the application: which rules passed, not the personal facts behind them.
    assert done["conditions"][0] == {
        "id": "age",
        "kind": "age_at_least",
        "hard": True,
        "status": "met",
        "explain": "申请人须年满60周岁",
    }
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert app_id in [a["id"] for a in queue]


async def test_a_soft_condition_warns_but_allows_submission(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(
        client,
        login,
        birth=born_years_ago(66),
        household="合肥市蜀山区",
        address="安徽省合肥市蜀山区长江西路1号",
    )
    app_id = await prefilled_draft(client, r, OLD_AGE)
    body = (
        await client.get(
            f"{API}/items/{OLD_AGE}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    assert body["can_submit"] is True and body["blocking"] == []
    assert body["warnings"] == [
        "本市户籍老年人可直接申请；非本市户籍的须持有本市居住证：您的户籍在合肥市蜀山区，不在亳州市"
    ]
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    assert {c["id"]: c["status"] for c in resp.json()["conditions"]} == {"age": "met", "hukou": "unmet"}


async def test_missing_registry_data_is_left_to_a_reviewer_never_passed(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    # The population record has no household registration or registered address.
    r = await resident_born(client, login, birth=born_years_ago(45), household="", address="")
    reviewer, _ = await make_staff(client, login, department="谯城区公安分局")
    app_id = await prefilled_draft(client, r, NO_RECORD)
    body = (
        await client.get(
            f"{API}/items/{NO_RECORD}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    hukou = _by_id(body["conditions"])["hukou"]
    assert hukou["status"] == "unknown" and hukou["reason"].endswith("需人工审核")
    assert _by_id(body["conditions"])["id_card"]["status"] == "met"
    assert body["can_submit"] is True and body["instant_possible"] is False

    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    # An instant-approval item, but a condition could not be checked: a person decides.
    assert resp.json()["status"] == "submitted" and resp.json()["instant"] is False
    assert resp.json()["result_cert_no"] is None
    assert {c["id"]: c["status"] for c in resp.json()["conditions"]}["hukou"] == "unknown"
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert app_id in [a["id"] for a in queue]


async def test_rules_travel_through_export_and_a_malformed_rule_is_refused_at_import_with_its_row(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    admin = await login(roles=["admin"])
    resp = await client.get(f"{API}/admin/catalogue/export", params={"format": "csv"}, headers=admin)
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    header = rows[0]
    col, code = header.index("条件规则"), header.index("事项编码")
    row_of = {r[code]: n for n, r in enumerate(rows)}
    exported = [json.loads(line) for line in rows[row_of[OLD_AGE]][col].splitlines()]
    assert exported[0] == {
        "id": "age",
        "hard": True,
        "condition": 1,
        "explain": "申请人须年满60周岁",
        "kind": "age_at_least",
        "value": 60,
    }
    assert rows[row_of[NO_RECORD]][header.index("秒批")] == "是"

    async def _import(rows: list[list[str]]) -> httpx.Response:
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        return await client.post(
            f"{API}/admin/catalogue/import",
            files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")},
            headers=admin,
        )

    bad = [list(r) for r in rows]
    n_age, n_hukou, n_json = row_of[OLD_AGE], row_of[NO_RECORD], row_of["BZ-RS-002"]
    bad[n_age][col] = json.dumps(
        {"id": "age", "kind": "age_over", "value": 60, "explain": "申请人须年满60周岁"}, ensure_ascii=False
    )
    bad[n_hukou][col] = json.dumps(
        {"id": "hukou", "kind": "hukou_in", "explain": "须为本市户籍", "condition": 9}, ensure_ascii=False
    )
    bad[n_json][col] = '{"id": "age", "kind": "age_at_least", "value": 60'
    resp = await _import(bad)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "gov_services.catalogue_file_invalid"
    errors = {e["row"]: e for e in problem["errors"]}
    # Spreadsheet rows: the header is row 1, so list index n is row n + 1.
    assert errors[n_age + 1]["column"] == "条件规则"
    assert errors[n_age + 1]["message"].startswith("第1条规则（age）：规则类型“age_over”无法识别")
    assert errors[n_hukou + 1]["column"] == "条件规则"
    assert errors[n_hukou + 1]["message"] == "第1条规则（hukou）：value 为必填项"
    assert errors[n_json + 1]["message"].startswith("第1条规则不是有效的 JSON")

    # A rule that names a condition the item does not have, or an e-certificate none of its
    # materials attaches, is refused too; nothing was imported.
    bad = [list(r) for r in rows]
    bad[n_hukou][col] = json.dumps(
        {"id": "hukou", "kind": "hukou_in", "value": "亳州市", "explain": "须为本市户籍", "condition": 9},
        ensure_ascii=False,
    )
    bad[n_age][col] = json.dumps(
        {"id": "card", "kind": "ecert_held", "cert": "残疾人证", "explain": "须持有残疾人证"},
        ensure_ascii=False,
    )
    resp = await _import(bad)
    assert resp.status_code == 422, resp.text
    errors = {e["row"]: e for e in resp.json()["errors"]}
    assert errors[n_hukou + 1] == {
        "row": n_hukou + 1,
        "column": "条件规则",
        "message": "第1条规则：对应条件序号 9 超出受理条件数（2条）",
    }
    assert errors[n_age + 1]["message"] == "第1条规则：所需电子证照“残疾人证”不在本事项的申请材料中"
    guide = (await client.get(f"{API}/items/{OLD_AGE}")).json()
    assert [r["kind"] for r in guide["rules"]] == ["age_at_least", "hukou_in"]

    # The export imports back unchanged.
    resp = await _import(rows)
    assert resp.status_code == 200, resp.text
    assert resp.json()["imported"]["updated"] == 0


def test_each_rule_kind_is_met_unmet_or_unknown_with_its_reason() -> None:
    import datetime as dt

    from columns.gov_services.rules import RULES, Facts, evaluate

    rules = RULES.validate_python(
        [
            {"id": "max", "kind": "age_at_most", "value": 65, "explain": "年龄不超过65周岁", "condition": 1},
            {
                "id": "rel",
                "kind": "relationship_in",
                "values": ["本人", "配偶", "子女"],
                "explain": "近亲属代办",
            },
            {
                "id": "sex",
                "kind": "field_in",
                "field": "person.gender",
                "label": "性别",
                "values": ["男"],
                "explain": "限男性",
            },
            {
                "id": "low",
                "kind": "field_range",
                "field": "family.income",
                "label": "家庭人均月收入",
                "max": "1500",
                "explain": "低于低保标准",
            },
            {
                "id": "high",
                "kind": "field_range",
                "field": "family.income",
                "label": "家庭人均月收入",
                "min": 2000,
                "explain": "高于2000元",
                "hard": False,
            },
            {"id": "card", "kind": "ecert_held", "cert": "残疾人证", "explain": "持有残疾人证"},
        ]
    )
    # Born on 4 December 1956: still 69 on 3 December 2026, the day before the 70th birthday.
    facts = Facts(
        birth_date=dt.date(1956, 12, 4),
        household="亳州市利辛县",
        ecerts=frozenset({"居民身份证"}),
        certificates_checked=True,
        form={"applicant.relationship": "子女", "person.gender": "女", "family.income": "1200"},
        today=dt.date(2026, 12, 3),
    )
    checked = evaluate(rules, ["年龄不超过65周岁", "其他条件"], facts)
    assert {r.id: (r.status, r.reason) for r in checked.results} == {
        "max": ("unmet", "您今年69周岁，超过65周岁"),
        "rel": ("met", "与当事人的关系为“子女”"),
        "sex": ("unmet", "性别为“女”，须为男之一"),
        "low": ("met", "家庭人均月收入为1200，在规定范围内"),
        "high": ("unmet", "家庭人均月收入为1200，低于2000"),
        "card": ("unmet", "电子证照库中没有您的残疾人证"),
    }
    assert [r.id for r in checked.blocking] == ["max", "sex", "card"]
    assert [r.id for r in checked.warnings] == ["high"]
    assert checked.manual == ((2, "其他条件"),) and not checked.fully_met

    # Nothing known: every rule is left to a reviewer, none passes.
    unknown = evaluate(rules, ["年龄不超过65周岁"], Facts(form={"family.income": "一千二"}))
    assert {r.status for r in unknown.results} == {"unknown"}
    assert all(r.reason.endswith("需人工审核") for r in unknown.results)
    assert unknown.blocking == [] and not unknown.fully_met
