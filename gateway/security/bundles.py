"""Evidence bundles for people outside the gateway: mask what the proofs do not cover, name what they do.

A case's evidence bundle (``gateway audit export``) must verify offline, byte for byte:
each entry's body is hashed into the chain and the seals sign the Merkle roots over those
hashes, so neither can change. The gateway keeps personal data out of entries where they
are written (quarantine errors, unmask reasons, file names are masked at the source).
``gateway audit export --mask`` masks every part of the bundle that no hash or signature
covers (the exporter's notes and anything a later format adds beside the entries) and
names each entry whose hashed body still carries personal data — an entry written before
masking at the source existed — so whoever hands the bundle on knows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.security.masking import mask_tree

# What the offline verifier checks, or what locates a proof: never changed.
BUNDLE_PROOF_KEYS = frozenset({"format", "case", "exported_at", "algorithm", "merkle", "certificates", "seals",
                               "entries"})
ENTRY_PROOF_KEYS = frozenset({"seq", "hash", "prev_hash", "body", "body_base64", "seal", "leaf_index", "tree_size",
                              "path"})


@dataclass
class BundleMasking:
    """What ``mask_bundle`` did: parts masked outside the proofs, and entries that carry personal data inside them."""

    path: Path
    masked_parts: list[str] = field(default_factory=list)
    carrying: list[int] = field(default_factory=list)  # seqs of entries whose hashed body holds personal data


def _body(entry: dict[str, Any]) -> Any:
    if "body" not in entry:
        return None  # a body that is not UTF-8 text is not JSON the gateway wrote: nothing to judge
    try:
        return json.loads(entry["body"])
    except ValueError:
        return None


def mask_bundle(path: str | Path) -> BundleMasking:
    """Mask ``path`` in place (atomically) outside its proofs; report entries that hold personal data."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    result = BundleMasking(path)
    changed = False
    for key, value in list(data.items()):
        if key not in BUNDLE_PROOF_KEYS:
            masked = mask_tree(value)
            if masked != value:
                data[key], changed = masked, True
                result.masked_parts.append(key)
    for entry in data.get("entries", []):
        for key, value in list(entry.items()):
            if key not in ENTRY_PROOF_KEYS:
                masked = mask_tree(value)
                if masked != value:
                    entry[key], changed = masked, True
                    result.masked_parts.append(f"entries[{entry.get('seq')}].{key}")
        body = _body(entry)
        if body is not None and mask_tree(body) != body:
            result.carrying.append(int(entry.get("seq", 0)))
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return result
