"""The verifiable audit trail: hash chain, seals and signers, verification, evidence bundles, archives.

Public names are imported lazily, so the store can import ``gateway.audit.chain`` without
pulling in ``cryptography`` and the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ArchiveError": "gateway.audit.retention",
    "ArchiveOutcome": "gateway.audit.retention",
    "archive": "gateway.audit.retention",
    "ExportSummary": "gateway.audit.evidence",
    "export_case": "gateway.audit.evidence",
    "generate_seal_key": "gateway.audit.keys",
    "load_certificates": "gateway.audit.keys",
    "load_local_signer": "gateway.audit.keys",
    "load_or_create_dev_signer": "gateway.audit.keys",
    "SealConflict": "gateway.audit.model",
    "SealHead": "gateway.audit.model",
    "SealRow": "gateway.audit.model",
    "ArchiveRow": "gateway.audit.model",
    "Sealer": "gateway.audit.seals",
    "SealRefused": "gateway.audit.seals",
    "build_statement": "gateway.audit.seals",
    "ExternalSigner": "gateway.audit.signers",
    "LocalSigner": "gateway.audit.signers",
    "Signer": "gateway.audit.signers",
    "SignerError": "gateway.audit.signers",
    "key_id_of": "gateway.audit.signers",
    "make_signer": "gateway.audit.signers",
    "register_signature_algorithm": "gateway.audit.signers",
    "register_signer_backend": "gateway.audit.signers",
    "verify_signature": "gateway.audit.signers",
    "VerifyReport": "gateway.audit.verify",
    "verify_path": "gateway.audit.verify",
    "verify_store": "gateway.audit.verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.audit' has no attribute {name!r}")
    return getattr(import_module(module), name)
