"""Common schema v1: the record kinds and their fields.

Anchored on GB/T 39046-2020 (data sets for application, acceptance, processing,
completion, evaluation and electronic supervision), the provincial exchange XML
(APPROVEDATAINFO with SPSHENQIN / SPSHOULI / SPGUOCHENG / SPBANJIE sections, whose
short codes are given as ``wire``) and the 双公示 licence (XK_) and penalty (CF_)
lists.  Field names are English snake_case; each carries its Chinese term.
"""

from __future__ import annotations

from gateway.schema._types import FieldSpec, RecordKind

SCHEMA_VERSION = "1"


def _str(name: str, title: str, wire: str | None = None, n: int = 200, req: bool = False, **kw: object) -> FieldSpec:
    return FieldSpec(name, "str", title, wire, req, n, **kw)  # type: ignore[arg-type]


def _ident(name: str, title: str, wire: str | None = None, n: int = 100, req: bool = False, **kw: object) -> FieldSpec:
    """A text field that names something (a number, a key): identifier characters only."""
    return FieldSpec(name, "str", title, wire, req, n, identifier=True, **kw)  # type: ignore[arg-type]


def _code(name: str, title: str, table: str, wire: str | None = None, req: bool = False, **kw: object) -> FieldSpec:
    return FieldSpec(name, "code", title, wire, req, code_table=table, **kw)  # type: ignore[arg-type]


def _typed(kind: str, name: str, title: str, wire: str | None = None, req: bool = False, **kw: object) -> FieldSpec:
    return FieldSpec(name, kind, title, wire, req, **kw)  # type: ignore[arg-type]


def _enum(name: str, title: str, values: tuple[str, ...], wire: str | None = None, req: bool = False, **kw: object) -> FieldSpec:
    return FieldSpec(name, "enum", title, wire, req, enum=values, **kw)  # type: ignore[arg-type]


_CASE_NO = _ident("case_no", "申办流水号", "SBLSH", 64, req=True)
_CASE_NO_OPT = _ident("case_no", "申办流水号（关联办件）", "SBLSH", 64)
_VERSION = _typed(
    "int", "version", "数据版本号", "VERSION", description="1 on first report, +1 on every re-report", minimum=1
)
_ITEM_CODE = _ident("item_code", "事项编码（基本编码）", "SXBM", 10)


def _identity_block(prefix: str) -> tuple[FieldSpec, ...]:
    """行政相对人 fields shared by the 双公示 licence (XK_) and penalty (CF_) lists."""
    return (
        _str("counterpart_name", "行政相对人名称", f"{prefix}_XDR_MC", 200, req=True),
        _code("counterpart_category", "行政相对人类别", "counterpart_category", f"{prefix}_XDR_LB", req=True),
        _typed("credit_code", "counterpart_credit_code", "行政相对人统一社会信用代码", f"{prefix}_XDR_SHXYM"),
        _ident("business_reg_no", "工商注册号", f"{prefix}_XDR_GSZC", 50),
        _ident("org_code", "组织机构代码", f"{prefix}_XDR_ZZJG", 9),
        _str("legal_representative", "法定代表人", f"{prefix}_FRDB", 50),
        _code("legal_rep_id_type", "法定代表人证件类型", "id_type", f"{prefix}_FR_ZJLX"),
        _typed(
            "id_number", "legal_rep_id_no", "法定代表人证件号码", f"{prefix}_FR_ZJHM", personal=True,
            id_type_field="legal_rep_id_type",
        ),
        _code("counterpart_id_type", "行政相对人证件类型", "id_type", f"{prefix}_XDR_ZJLX"),
        _typed(
            "id_number", "counterpart_id_no", "行政相对人证件号码", f"{prefix}_XDR_ZJHM", personal=True,
            id_type_field="counterpart_id_type",
        ),
    )


CASE = RecordKind(
    "case",
    "办件",
    (
        _CASE_NO,
        _ITEM_CODE,
        _ident("implementation_code", "实施编码", "SSXBM", 36),
        _str("item_name", "事项名称", "SXMC", 200),
        _code("item_type", "事项类型", "item_type", "SXLX"),
        _code("exercise_level", "行使层级", "exercise_level", "XSCJ"),
        _code("service_object", "服务对象", "service_object", "FWDX"),
        _str("project_name", "申报项目名称", "SBXMMC", 200),
        _code("applicant_type", "申请人类型", "applicant_type", "SQRLX", req=True),
        _str("applicant_name", "申请人名称", "SQRMC", 200, req=True),
        _code("applicant_id_type", "申请人证件类型", "id_type", "SQRZJLX", req=True),
        _typed(
            "id_number", "applicant_id_no", "申请人证件号码", "SQRZJHM", req=True, personal=True,
            id_type_field="applicant_id_type",
        ),
        _str("legal_representative", "法定代表人", "FDDBR", 50),
        _str("contact_name", "联系人姓名", "LXRXM", 50),
        _code("contact_id_type", "联系人证件类型", "id_type", "LXRZJLX"),
        _typed(
            "id_number", "contact_id_no", "联系人证件号码", "LXRZJHM", personal=True, id_type_field="contact_id_type"
        ),
        _ident("contact_phone", "联系人手机", "LXRSJ", 32, personal=True),
        _str("contact_address", "联系人通讯地址", "LXRDZ", 200, personal=True),
        _str("application_content", "申请内容", "SQNR", 2000),
        _str("material_list", "申报材料清单", "SBCLQD", 2000),
        _typed("int", "material_count", "申报材料数量", "CLSL"),
        _typed("datetime", "submitted_at", "申报时间", "SBSJ", req=True),
        _code("submit_method", "申报方式", "handling_form", "SBFS"),
        _code("channel", "申报渠道", "handling_form", "SBQD"),
        _typed("region_code", "region_code", "行政区划代码", "XZQHDM", req=True),
        _str("department_name", "实施机构", "SSJGMC", 200),
        _typed("credit_code", "department_credit_code", "实施机构统一社会信用代码", "SSJGDM"),
        _code("case_type", "办件类型", "case_type", "BJLX"),
        _typed("int", "legal_time_limit", "法定时限", "FDSX"),
        _typed("int", "promised_time_limit", "承诺时限", "CNSX"),
        _code("time_limit_unit", "时限单位", "time_unit", "CNSXDW"),
        _str("remark", "备注", "BZ", 1000),
        _VERSION,
    ),
    key_fields=("case_no",),
    time_field="submitted_at",
    version_field="version",
    description="one application (办件), from the SPSHENQIN section",
)

ACCEPTANCE = RecordKind(
    "acceptance",
    "受理",
    (
        _CASE_NO,
        _ITEM_CODE,
        _str("department_name", "受理部门名称", "SLBMMC", 200, req=True),
        _typed("credit_code", "department_credit_code", "受理部门统一社会信用代码", "SLBMZZJGDM"),
        _str("handler_name", "受理人姓名", "BLRXM", 50),
        _code("status", "受理状态", "acceptance_status", "SLZTDM", req=True),
        _str("refusal_reason", "不受理原因", "BSLYY", 1000),
        _ident("document_no", "受理文书编号", "SLWSBH", 100),
        _typed("datetime", "accepted_at", "受理时间", "SLSJ", req=True),
        _typed("int", "promised_time_limit", "承诺时限", "CNSX"),
        _code("time_limit_unit", "时限单位", "time_unit", "CNSXDW"),
        _typed("datetime", "promised_completion_at", "承诺办结时间", "CNBJSJ"),
        _VERSION,
    ),
    key_fields=("case_no",),
    time_field="accepted_at",
    version_field="version",
    description="accept, refuse or ask for corrections (SPSHOULI)",
)

PROCESS_STEP = RecordKind(
    "process_step",
    "办理环节",
    (
        _CASE_NO,
        _ITEM_CODE,
        _code("step_code", "环节代码", "step_code", "SPHJDM", req=True),
        _str("step_name", "环节名称", "SPHJMC", 100),
        _str("department_name", "办理部门名称", "SPBMMC", 200),
        _str("handler_name", "处理人姓名", "SPRXM", 50),
        _str("opinion", "处理意见", "SPYJ", 2000),
        _typed("datetime", "handled_at", "处理时间", "SPSJ", req=True),
        _enum("action", "业务动作", ("pass", "return", "other"), description="通过 pass / 退回 return / 其他 other"),
        _VERSION,
    ),
    key_fields=("case_no", "step_code", "handled_at"),
    time_field="handled_at",
    version_field="version",
    description="one handling step (SPGUOCHENG)",
)

CORRECTION = RecordKind(
    "correction",
    "补正",
    (
        _CASE_NO,
        _ITEM_CODE,
        _str("notice_reason", "补正告知原因", "BZGZYY", 2000, req=True),
        _str("material_list", "补正材料清单", "BZCLQD", 2000),
        _str("notifier_name", "告知人姓名", "BZGZR", 50),
        _typed("datetime", "notified_at", "补正告知时间", "BZGZSJ", req=True),
        _typed("datetime", "resubmitted_at", "补正时间（材料补齐）", "BZSJ"),
        _VERSION,
    ),
    key_fields=("case_no", "notified_at"),
    time_field="notified_at",
    version_field="version",
    description="a correction notice and the re-submission that answers it; the clock restarts on BZSJ",
)

SPECIAL_PROCEDURE = RecordKind(
    "special_procedure",
    "特别程序",
    (
        _CASE_NO,
        _ITEM_CODE,
        _code("procedure_type", "特别程序种类", "special_procedure_type", "TBCXZL", req=True),
        _str("procedure_name", "特别程序种类名称", "TBCXZLMC", 100),
        _typed("datetime", "started_at", "特别程序开始日期", "TBCXKSRQ", req=True),
        _typed("datetime", "ended_at", "特别程序结束日期", "TBCXJSRQ"),
        _typed("int", "time_limit", "特别程序时限", "TBCXSX"),
        _code("time_limit_unit", "特别程序时限单位", "time_unit", "TBCXSXDW"),
        _str("approver_name", "批准人", "TBCXPZR", 50),
        _str("reason", "特别程序启动理由", "TBCXQDLY", 2000),
        _str("result", "特别程序结果", "TBCXJG", 2000),
        _typed("decimal", "fee_amount", "特别程序收费金额（元）", "TBCXSFJE"),
        _VERSION,
    ),
    key_fields=("case_no", "procedure_type", "started_at"),
    time_field="started_at",
    version_field="version",
    description="clock-stopping procedures: extension, hearing, tender, inspection, expert review …",
)

COMPLETION = RecordKind(
    "completion",
    "办结",
    (
        _CASE_NO,
        _ITEM_CODE,
        _str("department_name", "办结部门名称", "BJBMMC", 200, req=True),
        _typed("credit_code", "department_credit_code", "办结部门统一社会信用代码", "BJBMZZJGDM"),
        _str("handler_name", "办结人姓名", "BJRXM", 50),
        _code("result_code", "办结结果", "completion_result", "BJJGDM", req=True),
        _str("result_description", "办结结果描述", "BJJGMS", 2000),
        _str("license_name", "证照名称", "ZJMC", 200),
        _ident("license_no", "证照编号", "ZJBH", 100),
        _typed("license_id", "license_id", "电子证照标识", "DZZZBS"),
        _typed("date", "license_valid_until", "证照有效期限", "ZJYXQX"),
        _str("issuer", "发证单位", "FZDW", 200),
        _typed("decimal", "fee_amount", "收费金额（元）", "SFJE"),
        _typed("datetime", "completed_at", "办结时间", "BJSJ", req=True),
        _VERSION,
    ),
    key_fields=("case_no",),
    time_field="completed_at",
    version_field="version",
    description="the decision that ends a case (SPBANJIE)",
)

APPROVAL_RESULT = RecordKind(
    "approval_result",
    "行政许可决定",
    (
        _ident("decision_no", "行政许可决定文书号", "XK_WSH", 100, req=True),
        _CASE_NO_OPT,
        _ITEM_CODE,
        _code("item_type", "事项类型", "item_type", None, description="for routing to the supervising departments"),
        _typed("region_code", "region_code", "行政区划代码", None),
        *_identity_block("XK"),
        _str("document_name", "行政许可决定文书名称", "XK_XKWS", 200),
        _code("license_category", "许可类别", "license_category", "XK_XKLB", req=True),
        _str("license_name", "许可证书名称", "XK_XKZS", 200),
        _ident("license_no", "许可编号", "XK_XKBH", 100),
        _typed("license_id", "license_id", "电子证照标识", None),
        _str("content", "许可内容", "XK_NR", 4000, req=True),
        _typed("date", "decided_on", "许可决定日期", "XK_JDRQ", req=True),
        _typed("date", "valid_from", "有效期自", "XK_YXQZ", req=True),
        _typed("date", "valid_until", "有效期至", "XK_YXQJZ", description="2099-12-31 where the source says 长期"),
        _str("authority", "许可机关", "XK_XKJG", 200, req=True),
        _typed("credit_code", "authority_code", "许可机关统一社会信用代码", "XK_XKJGDM", req=True),
        _code("status", "当前状态", "license_status", "XK_ZT"),
        _str("data_source", "数据来源单位", "XK_LYDW", 200),
        _typed("credit_code", "data_source_code", "数据来源单位统一社会信用代码", "XK_LYDWDM"),
        _str("remark", "备注", "BZ", 1000),
        _VERSION,
    ),
    key_fields=("decision_no",),
    time_field="decided_on",
    version_field="version",
    description="a licence decision pushed to the supervising department (双公示 行政许可, XK_)",
)

SUPERVISION_RESULT = RecordKind(
    "supervision_result",
    "监管结果",
    (
        _ident("decision_no", "处罚（监管）决定书文号", "CF_WSH", 100, req=True),
        _CASE_NO_OPT,
        _enum(
            "result_type", "监管结果类型", ("inspection", "penalty", "revocation", "suspension", "other"), req=True,
            description="检查 inspection / 处罚 penalty / 撤销吊销 revocation / 暂扣 suspension / 其他 other",
        ),
        _ITEM_CODE,
        _code("item_type", "事项类型", "item_type", None),
        _typed("region_code", "region_code", "行政区划代码", None),
        *_identity_block("CF"),
        _str("violation_type", "违法行为类型", "CF_WFXW", 2000),
        _str("facts", "违法事实", "CF_SY", 4000),
        _str("basis", "处罚依据", "CF_YJ", 2000),
        _code("penalty_category", "处罚类别", "penalty_category", "CF_CFLB", multiple=True),
        _str("content", "处罚内容", "CF_NR", 4000, req=True),
        _typed("decimal", "fine_amount", "罚款金额（万元）", "CF_NR_FK"),
        _typed("decimal", "confiscated_amount", "没收违法所得、没收非法财物的金额（万元）", "CF_NR_WFFF"),
        _str("affected_license", "暂扣或吊销证照名称及编号", "CF_NR_ZKDX", 500),
        _ident("affected_license_no", "受影响的许可编号", None, 100),
        _enum("license_effect", "对许可的影响", ("none", "suspend", "revoke"), description="无 / 暂扣 / 吊销撤销"),
        _typed("date", "decided_on", "处罚决定日期", "CF_JDRQ", req=True),
        _typed("date", "valid_until", "处罚有效期", "CF_YXQ"),
        _typed("date", "disclosure_until", "公示截止期", "CF_GSJZQ"),
        _str("authority", "处罚机关", "CF_CFJG", 200, req=True),
        _typed("credit_code", "authority_code", "处罚机关统一社会信用代码", "CF_CFJGDM", req=True),
        _str("data_source", "数据来源单位", "CF_LYDW", 200),
        _typed("credit_code", "data_source_code", "数据来源单位统一社会信用代码", "CF_LYDWDM"),
        _str("remark", "备注", "BZ", 1000),
        _VERSION,
    ),
    key_fields=("decision_no",),
    time_field="decided_on",
    version_field="version",
    description="inspections, penalties, revocations pushed back to the approving side (双公示 行政处罚, CF_)",
)

SUPERVISION_ALERT = RecordKind(
    "supervision_alert",
    "电子监察预警",
    (
        _ident("alert_id", "预警编号", None, 100, req=True),
        _ident("case_no", "办件编号", "SBLSH", 64),
        _str("rule", "监察规则", None, 100, req=True),
        _code("alert_type", "预警类型", "supervision_alert_type", None, req=True),
        _enum("severity", "预警级别", ("red", "yellow", "info"), req=True, description="红牌 red / 黄牌 yellow / 提示 info"),
        _typed("datetime", "raised_at", "产生时间", None, req=True),
        _str("department", "责任部门", None, 200),
        _str("description", "描述", None, 2000, req=True),
        _typed("datetime", "due_at", "时限截止时间", None),
        _str("subject_kind", "所涉记录种类", None, 40),
        _str("subject_key", "所涉记录键", None, 200),
    ),
    key_fields=("alert_id",),
    time_field="raised_at",
    description="raised by the gateway's electronic-supervision rules; alert types are the gateway's own table",
)

EVALUATION = RecordKind(
    "evaluation",
    "好差评",
    (
        _ident("evaluation_id", "评价编号", None, 100, req=True),
        _ident("case_no", "申办流水号", "SBLSH", 64),
        _ITEM_CODE,
        _str("department_name", "被评价部门", None, 200),
        _enum(
            "channel", "评价渠道", ("pc", "mobile", "window", "kiosk", "qr", "phone", "sms", "other"), req=True,
            description="电脑端 pc / 移动端 mobile / 窗口评价器 window / 自助终端 kiosk / 二维码 qr / 电话 phone / 短信 sms",
        ),
        _code(
            "satisfaction", "满意度", "satisfaction", None, req=True,
            description="GB/T 39046 coding: 1 非常满意 … 5 非常不满意 (the national 好差评 interface codes the reverse)",
        ),
        _str("comment", "评价内容", None, 2000),
        _typed("datetime", "evaluated_at", "评价时间", None, req=True),
    ),
    key_fields=("evaluation_id",),
    time_field="evaluated_at",
    description="a citizen's rating of a case or a service (好差评)",
)

AUDIT_SEAL = RecordKind(
    "audit_seal",
    "审计封印",
    (
        _str("chain", "审计链（网关名称）", None, 100, req=True, identifier=True),
        _typed("int", "seal", "封印序号", None, req=True),
        _typed("int", "from_seq", "起始条目序号", None, req=True),
        _typed("int", "to_seq", "截止条目序号", None, req=True),
        _str("statement_hash", "封印声明摘要", None, 128, req=True),
        _str("statement", "封印声明（签名原文）", None, 8000, req=True),
        _str("signature", "签名值（Base64）", None, 2000, req=True),
        _str("key_id", "签名证书指纹（SHA-256）", None, 64, req=True),
        _str("signature_algorithm", "签名算法", None, 40, req=True),
        _typed("datetime", "signed_at", "签名时间", None, req=True),
    ),
    key_fields=("chain", "seal"),
    time_field="signed_at",
    order_field="chain",
    description="a signed seal over the gateway's audit trail, delivered to the supervisors as a witness: with "
                "it they can prove later that no sealed history was cut off or rewritten",
)

KINDS: dict[str, RecordKind] = {
    k.name: k
    for k in (
        CASE,
        ACCEPTANCE,
        PROCESS_STEP,
        CORRECTION,
        SPECIAL_PROCEDURE,
        COMPLETION,
        APPROVAL_RESULT,
        SUPERVISION_RESULT,
        SUPERVISION_ALERT,
        EVALUATION,
        AUDIT_SEAL,
    )
}

PROVENANCE_FIELDS: dict[str, str] = {
    "source_system": "the counterpart system the record came from",
    "source_id": "the source's own identifier of the record",
    "source_version": "the source's version of the record (wire VERSION)",
    "business_time": "when it happened (the kind's time field)",
    "receipt_time": "when the gateway received it",
    "payload_hash": "hash of the original payload bytes",
    "original": "raw values of coded fields before their code table translated them",
    "ref": "where the record came from in words a user can follow (file and row, request id)",
    "mapping": "name@version of the mapping that produced it",
}
"""Keys of a stored record's ``provenance`` (see docs/HELPERS.md)."""
