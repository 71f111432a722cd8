"""HMAC-SHA256 request signing: the one canonical string both directions use.

The REST sink signs what it sends with it, and the push API checks what counterparts
send with it, so a counterpart implements the contract once (spelled out with a worked
example in adapters/rest/README.md, "Signed requests"). The core owns it because the
core never imports a plugin.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Timestamp"
NONCE_HEADER = "X-Nonce"
SIGNATURE_HEADER = "X-Signature"
KEY_ID_HEADER = "X-Key-Id"


def canonical_string(method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What the HMAC signature covers, one field per line, no trailing newline, UTF-8.

    METHOD (upper case) \\n raw path with query string exactly as sent \\n unix-seconds timestamp
    \\n nonce \\n lowercase hex SHA-256 of the exact body bytes (of b"" when there is no body).
    """
    return "\n".join(
        (method.upper(), path_and_query, timestamp, nonce, hashlib.sha256(body).hexdigest())
    ).encode("utf-8")


def hmac_signature(key: bytes, canonical: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of the canonical string."""
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def signature_matches(key: bytes, canonical: bytes, presented: str) -> bool:
    """Constant-time comparison of a presented hex signature (any case) with the expected one."""
    return hmac.compare_digest(hmac_signature(key, canonical).encode("ascii"),
                               presented.strip().lower().encode("ascii", "replace"))
