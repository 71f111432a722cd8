"""Masking of personal data: by field, inside free text, names of natural persons, logs and quarantine errors."""

from __future__ import annotations

import io
import json
import logging

from test_api_support import ID_NO, MAPPINGS, PHONE

from gateway.mapping import load_mapping
from gateway.security.masking import (
    install_log_masking,
    mask_address,
    mask_error,
    mask_name,
    mask_text,
    mask_tree,
    payload_rules,
)

OTHER_ID = "370602198807150014"  # valid GB 11643


def case_record(**data: object) -> dict:
    base = {"case_no": "SL370602202609290001", "applicant_type": "1", "applicant_name": "张三",
            "applicant_id_type": "111", "applicant_id_no": ID_NO, "contact_name": "李四娜", "contact_phone": PHONE,
            "contact_address": "山东省烟台市芝罘区南大街100号3单元201室", "department_name": "芝罘区行政审批服务局"}
    base.update(data)
    return {"kind": "case", "schema_version": "1", "data": base, "provenance": {"ref": "county-00001.xml#1"}}


def test_an_id_number_in_free_text_is_masked_when_its_check_character_and_birth_date_hold() -> None:
    text = f"申请人身份证号{ID_NO}，另见 {OTHER_ID}；流水号 370602202609290001 不是身份证号"
    masked = mask_text(text)
    assert "110105********002X" in masked and "370602********0014" in masked
    assert ID_NO not in masked and OTHER_ID not in masked
    assert "370602202609290001" in masked  # 18 digits, but the check character is wrong: a case number stays


def test_full_width_and_lower_case_id_numbers_are_found_too() -> None:
    assert mask_text("证件：１１０１０５１９４９１２３１００２Ｘ") == "证件：１１０１０５********００２Ｘ"
    assert mask_text(ID_NO.lower()) == "110105********002x"


def test_mobile_numbers_in_free_text_are_masked_with_or_without_separators_and_country_code() -> None:
    assert mask_text(f"电话{PHONE}") == "电话138****5678"
    assert mask_text("call +86 138-1234-5678 now") == "call +86 138-****-5678 now"
    assert mask_text("联系 139 1234 5678。") == "联系 139 **** 5678。"
    assert mask_text("订单号 123456789012345") == "订单号 123456789012345"  # not a mobile number
    assert mask_text("金额 12812345678.00 元") == "金额 12812345678.00 元"  # 128… is no mobile prefix


def test_names_keep_their_first_character_and_addresses_their_administrative_part() -> None:
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***" and mask_name("John Smith") == "J*** S****"
    assert mask_address("山东省烟台市芝罘区南大街100号3单元201室") == "山东省烟台市芝罘区****"
    assert mask_address("北京市海淀区中关村大街1号") == "北京市海淀区****"
    assert mask_address("南大街100号") == "****"


def test_a_natural_persons_record_is_masked_by_field_and_their_names_everywhere_in_it() -> None:
    record = case_record(remark=f"张三与联系人李四娜到窗口，补交身份证 {OTHER_ID} 复印件，电话 {PHONE}")
    masked = mask_tree(record)
    data = masked["data"]
    assert data["applicant_name"] == "张*" and data["contact_name"] == "李**"
    assert data["applicant_id_no"] == "110105********002X" and data["contact_phone"] == "138****5678"
    assert data["contact_address"] == "山东省烟台市芝罘区****"
    assert data["remark"] == "张*与联系人李**到窗口，补交身份证 370602********0014 复印件，电话 138****5678"
    assert data["case_no"] == "SL370602202609290001" and data["department_name"] == "芝罘区行政审批服务局"
    assert record["data"]["applicant_name"] == "张三"  # the input is not changed


def test_an_enterprise_applicants_name_stays_but_a_sole_proprietors_is_masked() -> None:
    company = case_record(applicant_type="2", applicant_name="烟台海岳食品有限公司", applicant_id_type="821",
                          applicant_id_no="91370602MA3C1234X1", remark="烟台海岳食品有限公司申请")
    assert mask_tree(company)["data"]["applicant_name"] == "烟台海岳食品有限公司"
    sole = case_record(applicant_type="3", applicant_name="王伟小吃店", applicant_id_type="821",
                       applicant_id_no="92370602MA3C1234X1")  # 92: a 个体工商户's credit code
    assert mask_tree(sole)["data"]["applicant_name"] == "王****"
    result = {"kind": "approval_result", "data": {"counterpart_name": "刘芳", "counterpart_category": "自然人",
                                                  "content": "刘芳 获准食品经营"}}
    assert mask_tree(result)["data"] == {"counterpart_name": "刘*", "counterpart_category": "自然人",
                                         "content": "刘* 获准食品经营"}


def test_the_handlers_of_a_case_are_not_masked() -> None:
    acceptance = {"kind": "acceptance", "data": {"handler_name": "王五", "department_name": "芝罘区行政审批服务局"}}
    assert mask_tree(acceptance) == acceptance


def test_wire_short_codes_and_xml_attributes_are_masked_like_schema_fields() -> None:
    masked = mask_tree({"SPSHENQIN": {"SQRLX": "1", "SQRMC": "张三", "SQRZJHM": ID_NO, "LXRSJ": {"#text": PHONE},
                                      "@LXRXM": "李四", "SQNR": "张三申请"}})
    assert masked["SPSHENQIN"] == {"SQRLX": "1", "SQRMC": "张*", "SQRZJHM": "110105********002X",
                                   "LXRSJ": {"#text": "138****5678"}, "@LXRXM": "李*", "SQNR": "张*申请"}


def test_a_counterparts_own_keys_are_learned_from_its_mapping_with_its_code_tables() -> None:
    rules = payload_rules(load_mapping(MAPPINGS / "hall_platform.in.yaml"))
    assert {"applicantIdNo", "contactPhone", "contactName", "applicantName"} <= set(rules)
    person = {"applicantType": "PERSON", "applicantName": "张三", "applicantIdNo": ID_NO, "contactName": "李四",
              "contactPhone": PHONE, "remark": "张三 来电"}
    masked = mask_tree(person, rules)
    assert masked == {"applicantType": "PERSON", "applicantName": "张*", "applicantIdNo": "110105********002X",
                      "contactName": "李*", "contactPhone": "138****5678", "remark": "张* 来电"}
    company = {**person, "applicantType": "ENTERPRISE", "applicantName": "海岳食品有限公司",
               "applicantIdType": "20"}  # 20 is the hall platform's 营业执照 (821)
    assert mask_tree(company, rules)["applicantName"] == "海岳食品有限公司"


def test_identifiers_of_records_and_entries_are_not_scanned() -> None:
    row = {"case_no": OTHER_ID, "record_key": OTHER_ID, "idempotency_key": OTHER_ID, "last_error": f"bad {OTHER_ID}"}
    assert mask_tree(row) == {**row, "last_error": "bad 370602********0014"}


def test_a_quarantine_error_keeps_no_personal_value_or_number() -> None:
    err = mask_error({"field": "contact_name", "rule": "max_length", "value": "张三丰", "message": "too long"})
    assert err["value"] == "张**"
    err = mask_error({"field": "remark", "rule": "mapping", "value": f"tel {PHONE}",
                      "message": f"ValueError: invalid literal for int(): '{ID_NO}'"})
    assert err["value"] == "tel 138****5678" and ID_NO not in err["message"]
    err = mask_error({"field": "contact_address", "rule": "max_length", "value": "山东省烟台*********201室",
                      "message": "x"})
    assert err["value"] == "山东省****"  # the crude mask the schema applied is narrowed further


def test_log_lines_leave_with_numbers_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    install_log_masking([handler])
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    try:
        logger.warning("record %s refused: contact %s", ID_NO, PHONE)
        try:
            raise ValueError(f"bad id {ID_NO}")
        except ValueError:
            logger.exception("mapping crashed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "WARNING record 110105********002X refused: contact 138****5678" in out
    assert ID_NO not in out and PHONE not in out and "Traceback" in out


def test_a_page_of_a_thousand_records_masks_in_well_under_a_second() -> None:
    # Not a benchmark (benchmarks/bench_masking.py is): a guard against an accidental quadratic walk.
    import time

    rows = [{"id": i, "system": "county", "record": case_record(remark=f"第{i}号 张三 {PHONE}")} for i in range(1000)]
    started = time.perf_counter()
    masked = [mask_tree(r) for r in rows]
    assert time.perf_counter() - started < 1.0
    assert PHONE not in json.dumps(masked)
