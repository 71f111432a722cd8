"""Realistic provincial exchange data (APPROVEDATAINFO XML) for the demo, the tests and the benchmarks.

Identifiers carry correct check characters (统一社会信用代码, 居民身份证号), so a
generated record is valid unless it is asked to be bad.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
COMPANY_WORDS = ["鲁东", "海岳", "华信", "昌盛", "金桥", "瑞丰", "博远", "恒通", "蓝海", "嘉禾"]
COMPANY_TRADES = ["食品", "建材", "物流", "餐饮", "医药", "科技", "纺织", "农业"]
ITEMS = [  # (事项基本编码, 实施编码, 名称)
    ("XK00011", "11370600MB28584063370600001100001", "食品经营许可"),
    ("XK00023", "11370600MB28584063370600002300001", "公共场所卫生许可"),
    ("XK00107", "11370600MB28584063370600010700001", "建筑工程施工许可"),
    ("XK00201", "11370600MB28584063370600020100001", "药品零售企业许可"),
]
REGIONS = ["370602", "370611", "370612", "370613", "370681", "370683"]
DISTRICTS = {"370602": "芝罘区", "370611": "福山区", "370612": "牟平区", "370613": "莱山区", "370681": "龙口市",
             "370683": "莱州市"}  # GB/T 2260 names of the codes above: an address lies in its case's region


def org_code(body8: str) -> str:
    # GB 11714 values: digits as themselves, letters A=10 … Z=35
    s = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True))
    check = 11 - s % 11
    return body8 + ("X" if check == 10 else "0" if check == 11 else str(check))


def credit_code(rng: random.Random, region: str = "370602", prefix: str = "91") -> str:
    """A valid 统一社会信用代码: prefix (91 enterprise, 11 government body) + region + 组织机构代码 + check."""
    body8 = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    first17 = prefix + region + org_code(body8)
    s = sum(_CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return first17 + _CREDIT_ALPHABET[(31 - s % 31) % 31]


def id_number(rng: random.Random, region: str = "370602") -> str:
    """A valid 居民身份证号 with a real birth date and MOD 11-2 check character."""
    birth = datetime(1960, 1, 1) + timedelta(days=rng.randrange(0, 365 * 45))
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
    s = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return first17 + "10X98765432"[s % 11]


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")


HALL_CREDIT_CODE = credit_code(random.Random(1), "370600", prefix="11")


def case_fields(i: int, rng: random.Random, *, version: int = 1, bad: str | None = None,
                submitted_from: datetime | None = None, spread_minutes: int = 60 * 24 * 60) -> dict[str, str]:
    """The SPSHENQIN (申请) section of one case: 25 fields as the provincial exchange sends them."""
    region = rng.choice(REGIONS)
    item_code, impl_code, item_name = rng.choice(ITEMS)
    start = submitted_from or datetime(2026, 9, 1, 8, 30)
    submitted = start + timedelta(minutes=rng.randrange(0, max(1, spread_minutes)))
    enterprise = rng.random() < 0.6
    name = (f"{rng.choice(COMPANY_WORDS)}{rng.choice(COMPANY_TRADES)}有限公司" if enterprise else _person(rng))
    ident = credit_code(rng, region) if enterprise else id_number(rng, region)
    fields = {
        "SBLSH": f"3706{i:012d}",
        "SXBM": item_code,
        "SXMC": item_name,
        "SSXBM": impl_code,
        "SXLX": "01",
        "SQRLX": "2" if enterprise else "1",
        "SQRMC": name,
        "SQRZJLX": "821" if enterprise else "10",
        "SQRZJHM": ident,
        "LXRXM": _person(rng),
        "LXRZJLX": "10",
        "LXRZJHM": id_number(rng, region),
        "LXRSJ": f"13{rng.randrange(100000000, 999999999)}",
        "LXRDZ": f"山东省烟台市{DISTRICTS[region]}{rng.choice(COMPANY_WORDS)}路{rng.randrange(1, 300)}号",
        "SBSJ": f"{submitted:%Y%m%d%H%M%S}",
        "SBFS": rng.choice(["1", "2", "3"]),
        "SBQD": rng.choice(["1", "2"]),
        "BJLX": "2",
        "XZQHDM": region,
        "SLBMMC": "烟台市行政审批服务局",
        "SLBMZZJGDM": HALL_CREDIT_CODE,
        "SQNR": f"申请办理{item_name}",
        "CLSL": str(rng.randrange(1, 12)),
        "BZ": "",
        "VERSION": str(version),
    }
    if bad == "credit_code":
        fields["SQRZJHM"] = ident[:-1] + ("0" if ident[-1] != "0" else "1")
    elif bad == "date":
        fields["SBSJ"] = "20261340256100"
    elif bad == "missing":
        fields["SBLSH"] = ""
    return fields


def approvedatainfo_xml(fields: dict[str, str], section: str = "SPSHENQIN") -> bytes:
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return f"<APPROVEDATAINFO><{section}>{inner}</{section}></APPROVEDATAINFO>".encode()


def generate_items(n: int, *, seed: int = 7, bad_every: int = 0, start: int = 0,
                   submitted_from: datetime | None = None, spread_minutes: int = 60 * 24 * 60) -> Iterator[bytes]:
    """``n`` APPROVEDATAINFO elements; every ``bad_every``-th one carries a data error."""
    rng = random.Random(seed)
    bads = ("credit_code", "date", "missing")
    for i in range(start, start + n):
        bad = bads[(i // bad_every) % len(bads)] if bad_every and i % bad_every == bad_every - 1 else None
        yield approvedatainfo_xml(case_fields(i, rng, bad=bad, submitted_from=submitted_from,
                                              spread_minutes=spread_minutes))


def write_xml_file(path: Path, items: Iterator[bytes] | list[bytes], *, atomic: bool = True) -> int:
    """Write a provincial exchange file; with ``atomic`` it appears under its name only when complete."""
    tmp = path.with_name(path.name + ".tmp") if atomic else path
    n = 0
    with open(tmp, "wb") as f:
        f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<APPROVEDATAINFOS>\n')
        for item in items:
            f.write(item)
            f.write(b"\n")
            n += 1
        f.write(b"</APPROVEDATAINFOS>\n")
        f.flush()
        os.fsync(f.fileno())
    if atomic:
        os.replace(tmp, path)
    return n
