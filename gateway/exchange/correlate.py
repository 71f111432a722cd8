"""Correlation: what a record says about its case (办件编号), its licence (许可编号) and its subject's credit code.

Pure functions over a stored record's ``data``; the follower (``gateway.exchange.follower``)
keeps the links and resolves the case of a supervision result that names only a licence, or
only a credit code and its own decision, from the licences and links it has seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

EFFECTS = ("suspend", "revoke")
_RESULT_EFFECT = {"suspension": "suspend", "revocation": "revoke"}
_CREDIT_CODE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_ENTERPRISE_ID_TYPES = ("821", "811")  # 营业执照, 组织机构代码证: the number names an organisation, not a person


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict):  # a dict is a field sealed at rest: it says nothing here
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Facts:
    """What one record says about its place in the chain (application → … → supervision result)."""

    case_no: str | None = None
    licence_no: str | None = None
    credit_code: str | None = None
    decision_no: str | None = None
    effect: str | None = None  # suspend | revoke: what a supervision result does to its licence
    result_type: str | None = None
    decided_on: str | None = None
    authority: str | None = None
    affected_licence: str | None = None  # 暂扣或吊销证照名称及编号, as free text
    item_code: str | None = None

    def detail(self) -> dict[str, Any]:
        """The facts worth keeping on the link (no personal data: codes, numbers, dates, authorities)."""
        out = {"effect": self.effect, "result_type": self.result_type, "decided_on": self.decided_on,
               "authority": self.authority, "affected_licence": self.affected_licence, "item_code": self.item_code}
        return {k: v for k, v in out.items() if v is not None}


def facts_of(kind: str, data: Mapping[str, Any]) -> Facts:
    """The correlation facts of one record of the common schema."""
    case_no = _text(data.get("case_no"))
    item_code = _text(data.get("item_code"))
    if kind == "case":
        credit = None
        number = _text(data.get("applicant_id_no"))
        if number and (str(data.get("applicant_type")) == "2" or data.get("applicant_id_type") in _ENTERPRISE_ID_TYPES) \
                and _CREDIT_CODE.match(number):
            credit = number
        return Facts(case_no=case_no, credit_code=credit, item_code=item_code)
    if kind == "completion":
        return Facts(case_no=case_no, licence_no=_text(data.get("license_no")), item_code=item_code)
    if kind == "approval_result":
        return Facts(case_no=case_no, licence_no=_text(data.get("license_no")),
                     credit_code=_text(data.get("counterpart_credit_code")), decision_no=_text(data.get("decision_no")),
                     decided_on=_text(data.get("decided_on")), authority=_text(data.get("authority")),
                     item_code=item_code)
    if kind == "supervision_result":
        result_type = _text(data.get("result_type"))
        effect = _text(data.get("license_effect"))
        if effect not in EFFECTS:
            effect = None if effect == "none" else _RESULT_EFFECT.get(result_type or "")
        return Facts(case_no=case_no, licence_no=_text(data.get("affected_license_no")),
                     credit_code=_text(data.get("counterpart_credit_code")), decision_no=_text(data.get("decision_no")),
                     effect=effect, result_type=result_type, decided_on=_text(data.get("decided_on")),
                     authority=_text(data.get("authority")), affected_licence=_text(data.get("affected_license")),
                     item_code=item_code)
    return Facts(case_no=case_no, item_code=item_code)


@dataclass(frozen=True, slots=True)
class Resolved:
    case_no: str | None
    licence_no: str | None
    by: str | None  # licence | credit_code | None
    note: str | None = None


def resolve(facts: Facts, licences: Mapping[str, Mapping[str, Any]],
            licences_of_credit: Iterable[Mapping[str, Any]], cases_of_credit: Iterable[str]) -> Resolved:
    """The case of a record that does not name one, from what is known of its licence and its subject.

    By its licence number when that licence's case is known (a licence not seen yet: it waits for
    it); a result that names no licence, by its credit code when that names exactly one licence (or
    the free-text 暂扣或吊销证照名称及编号 names one of them), or exactly one case. Several
    candidates and no way to choose: unresolved, with a note saying so.
    """
    if facts.licence_no:
        known = licences.get(facts.licence_no)
        if known is not None and known.get("case_no"):
            return Resolved(str(known["case_no"]), facts.licence_no, "licence")
        # It names a licence the gateway has not seen: that licence's case, not another of the subject's.
        return Resolved(None, facts.licence_no, None,
                        f"licence {facts.licence_no} is not known yet (no approval result or completion names it)")
    if not facts.credit_code:
        return Resolved(None, facts.licence_no, None, "names neither a licence nor a credit code")
    candidates = [lic for lic in licences_of_credit if lic.get("case_no")]
    if facts.affected_licence:
        named = [lic for lic in candidates if str(lic["licence_no"]) in facts.affected_licence]
        if len(named) == 1:
            return Resolved(str(named[0]["case_no"]), str(named[0]["licence_no"]), "licence")
    if len(candidates) == 1:
        return Resolved(str(candidates[0]["case_no"]), str(candidates[0]["licence_no"]), "credit_code")
    cases = sorted(set(cases_of_credit))
    if len(cases) == 1:
        return Resolved(cases[0], None, "credit_code")
    if not cases:
        return Resolved(None, None, None, "no case of its credit code is known yet")
    return Resolved(None, None, None,
                    f"the credit code names {len(cases)} cases ({', '.join(cases[:5])}); the counterpart must name "
                    "the licence or the case")
