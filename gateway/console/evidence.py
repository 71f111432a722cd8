"""How far a case's audit entries verify, for the case timeline: each entry's hash, its seal, the seal's signature.

The same rules as ``gateway audit verify`` and the offline verifier, applied to one case:

- an entry's hash is recomputed from its body and the hash of the entry before it;
- the seal covering it is found; its Merkle root is recomputed over the hashes of its whole
  range and compared with the signed statement (so an entry rewritten together with its
  stored hash is caught too);
- the seal's signature is checked against the certificate the store holds for its key.

An entry is ``proven`` (hash and signed seal hold), ``pending_signature`` (in a seal not yet
signed), ``unsealed`` (newer than the last seal) or ``broken`` (with the reason). The trust
anchor is the store's certificate copy; the evidence bundle (``gateway audit export --case``)
is what a third party verifies against a certificate it holds itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.audit.chain import GENESIS, entry_hash
from gateway.audit.merkle import merkle_root
from gateway.audit.signers import can_verify, verify_signature

MAX_SEALS_CHECKED = 20  # a case whose entries span more seals is checked on the newest ones only


async def case_verification(store: Any, rows: list[Any]) -> dict[str, Any]:
    """Per-entry verdicts for ``rows`` (AuditRow of one case, by seq) and a summary."""
    algorithm: str = store.audit_algorithm
    verdicts: dict[int, dict[str, Any]] = {}
    seals: dict[int, Any] = {}
    seal_of: dict[int, int | None] = {}
    for row in rows:
        before = await store.audit_hashes(row.seq - 1, row.seq - 1) if row.seq > 1 else []
        prev = before[0][1] if before else (GENESIS if row.seq == 1 else None)
        verdict: dict[str, Any] = {"seq": row.seq, "state": "unsealed", "seal": None}
        verdicts[row.seq] = verdict
        if prev is None:
            # The entry before was archived: its hash is in the archive file, not the store.
            verdict["hash"] = "previous_archived"
        else:
            try:
                body_seq = json.loads(row.body).get("seq")
            except ValueError:
                body_seq = None
            ok = body_seq == row.seq and entry_hash(prev, row.body, algorithm) == row.hash
            verdict["hash"] = "ok" if ok else "mismatch"
            if not ok:
                verdict.update(state="broken", problem="the entry's hash does not match its body and the entry "
                                                      "before it (changed after it was written)")
        seal = await store.seal_for_seq(row.seq)
        seal_of[row.seq] = seal.seal if seal is not None else None
        if seal is not None:
            seals[seal.seal] = seal
    certificates = await store.audit_certificates()
    checked: dict[int, str | None] = {}
    for number in sorted(seals, reverse=True)[:MAX_SEALS_CHECKED]:
        checked[number] = await _seal_problem(store, seals[number], certificates, algorithm)
    for seq, verdict in verdicts.items():
        number = seal_of.get(seq)
        if number is None:
            continue
        verdict["seal"] = number
        if verdict["state"] == "broken":
            continue
        if number not in checked:
            verdict["state"] = "not_checked"
            continue
        problem = checked[number]
        if problem is not None:
            verdict.update(state="broken", problem=problem)
        elif seals[number].signature is None:
            verdict["state"] = "pending_signature"
        else:
            verdict["state"] = "proven"
    summary = {state: 0 for state in ("proven", "pending_signature", "unsealed", "broken", "not_checked")}
    for verdict in verdicts.values():
        summary[verdict["state"]] += 1
    overall = ("broken" if summary["broken"] else "proven" if summary["proven"] == len(verdicts) and verdicts
               else "partly_proven" if summary["proven"] else "not_yet_sealed" if verdicts else "no_entries")
    return {"verdict": overall, "counts": summary, "entries": verdicts,
            "seals": {n: {"signed": seals[n].signature is not None, "from_seq": seals[n].from_seq,
                          "to_seq": seals[n].to_seq, "problem": checked.get(n)} for n in seals}}


async def _seal_problem(store: Any, seal: Any, certificates: dict[str, str], algorithm: str) -> str | None:
    """What is wrong with one seal (its statement, Merkle root or signature), or None."""
    try:
        statement = json.loads(seal.statement)
    except ValueError:
        return f"seal {seal.seal}: its statement is not JSON"
    if (statement.get("seal"), statement.get("from_seq"), statement.get("to_seq")) != (
            seal.seal, seal.from_seq, seal.to_seq) or statement.get("algorithm") != algorithm:
        return f"seal {seal.seal}: the statement does not describe entries {seal.from_seq}..{seal.to_seq}"
    hashes = await store.audit_hashes(seal.from_seq, seal.to_seq)
    if len(hashes) != seal.to_seq - seal.from_seq + 1:
        return f"seal {seal.seal}: entries of its range are missing from the store (archived or deleted)"
    # Tens of thousands of hashes: off the event loop, so pushes are not held up meanwhile.
    root = (await asyncio.to_thread(lambda: merkle_root([bytes.fromhex(h) for _, h in hashes], algorithm))).hex()
    if root != statement.get("merkle_root"):
        return f"seal {seal.seal}: the entries' hashes no longer give the signed Merkle root (entries changed)"
    if seal.signature is None:
        return None
    pem = certificates.get(seal.key_id or "")
    if pem is None:
        return f"seal {seal.seal}: signed by key {str(seal.key_id)[:16]}, whose certificate the store does not hold"
    if not can_verify(seal.signature_algorithm or ""):
        return f"seal {seal.seal}: signature algorithm {seal.signature_algorithm!r} cannot be checked here"
    try:
        verify_signature(x509.load_pem_x509_certificate(pem.encode("ascii")), seal.signature_algorithm,
                         seal.statement, seal.signature)
    except (InvalidSignature, ValueError):
        return f"seal {seal.seal}: the signature does not verify (statement or signature changed)"
    return None
