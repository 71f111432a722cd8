"""Encryption at rest of personal fields inside stored record bodies (AES-256-GCM or SM4-GCM).

At ingest, every field the schema marks ``personal`` is replaced in the record body by
``{"$enc": "v1:<algorithm>:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>"}``; delivery
rendering and the query API open it again. The additional authenticated data binds each
ciphertext to its place — system, kind, record key, version and field name — so a
database writer cannot move an encrypted ID number to another record or field unnoticed.
Business keys, versions, case numbers, times and every non-personal field stay clear, so
idempotency, routing, supervision and the queries that do not need personal data work
as before.

Keys come from a *keyring*: a file (mode 0600) or an environment variable holding one key
per line, ``<key id> <base64 key>`` (32 bytes for AES-256-GCM, 16 for SM4-GCM). The last
line (or ``[encryption].active_key``) encrypts; every key decrypts. Rotation: add a key
(`gateway encryption keygen`), restart, then `gateway encryption reencrypt`; drop the old
line when `gateway encryption status` shows nothing left under it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AES_256_GCM = "aes-256-gcm"
SM4_GCM = "sm4-gcm"
KEY_BYTES = {AES_256_GCM: 32, SM4_GCM: 16}
MARK = "$enc"
_VERSION = "v1"
_NONCE = 12
_TAG = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
log = logging.getLogger("gateway.security.fieldcrypt")


class FieldCryptError(Exception):
    """A keyring that cannot be used, or a stored value that cannot be opened; the message names which."""


def personal_fields() -> dict[str, tuple[str, ...]]:
    """Per record kind, the fields the common schema marks personal (what is encrypted)."""
    from gateway.schema import KINDS

    return {name: tuple(f.name for f in kind.fields if f.personal) for name, kind in KINDS.items()}


# --------------------------------------------------------------------------- keyring


def parse_keyring(text: str, *, where: str) -> dict[str, bytes]:
    """``<key id> <base64 key>`` per line (or ``;``-separated, for an environment variable); '#' starts a comment."""
    keys: dict[str, bytes] = {}
    for n, line in enumerate(re.split(r"[\n;]", text), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FieldCryptError(f"{where}, entry {n}: expected '<key id> <base64 key>'")
        key_id, encoded = parts
        if not _KEY_ID.match(key_id):
            raise FieldCryptError(f"{where}, entry {n}: key id {key_id!r} may use letters, digits, _ and - only")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise FieldCryptError(f"{where}, key {key_id!r}: not valid base64") from None
        if len(key) not in (16, 32):
            raise FieldCryptError(f"{where}, key {key_id!r}: {len(key)} bytes; AES-256-GCM needs 32, SM4-GCM 16")
        if key_id in keys:
            raise FieldCryptError(f"{where}: key id {key_id!r} appears twice")
        keys[key_id] = key
    return keys


def new_key_line(algorithm: str, key_id: str) -> str:
    if not _KEY_ID.match(key_id):
        raise FieldCryptError(f"key id {key_id!r} may use letters, digits, _ and - only")
    return f"{key_id} {base64.b64encode(os.urandom(KEY_BYTES[algorithm])).decode('ascii')}"


# --------------------------------------------------------------------------- the cipher


def _aad_prefix(system: str, kind: str, record_key: str, version: int) -> bytes:
    """What every field's additional data starts with; the field name follows."""
    return "\x1f".join(("exchange-gateway field v1", system, kind, record_key, str(version), "")).encode("utf-8")


def _aad(system: str, kind: str, record_key: str, version: int, field: str) -> bytes:
    return _aad_prefix(system, kind, record_key, version) + field.encode("utf-8")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)


def _plaintext(value: Any) -> bytes:
    """The value as JSON (so its type comes back), with a fast path for the usual string."""
    if type(value) is str:
        return encode_basestring(value).encode("utf-8")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(MARK), str)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a field lives: what its ciphertext is bound to."""

    system: str
    kind: str
    record_key: str
    version: int


class FieldCipher:
    """Seals and opens the personal fields of record bodies. Picklable (the file-ingest helper gets a copy)."""

    def __init__(self, keys: Mapping[str, bytes], algorithm: str = AES_256_GCM, active_key: str | None = None) -> None:
        if algorithm not in KEY_BYTES:
            raise FieldCryptError(f"unknown algorithm {algorithm!r}; choose {AES_256_GCM} or {SM4_GCM}")
        if not keys:
            raise FieldCryptError("the keyring holds no key")
        self.keys = dict(keys)
        self.algorithm = algorithm
        self.active_key = active_key or list(self.keys)[-1]
        if self.active_key not in self.keys:
            raise FieldCryptError(f"active key {self.active_key!r} is not in the keyring ({', '.join(self.keys)})")
        if len(self.keys[self.active_key]) != KEY_BYTES[algorithm]:
            raise FieldCryptError(f"active key {self.active_key!r} has {len(self.keys[self.active_key])} bytes; "
                                  f"{algorithm} needs {KEY_BYTES[algorithm]}")
        self.fields = personal_fields()
        self._aes: dict[str, AESGCM] = {}
        self._head = f"{_VERSION}:{self.algorithm}:{self.active_key}:"

    def __getstate__(self) -> dict[str, Any]:
        return {"keys": self.keys, "algorithm": self.algorithm, "active_key": self.active_key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keys"], state["algorithm"], state["active_key"])  # type: ignore[misc]

    # ----------------------------------------------------------------- primitives

    def _encrypt(self, key_id: str, algorithm: str, plaintext: bytes, aad: bytes, nonce: bytes | None = None
                 ) -> bytes:
        key = self.keys[key_id]
        nonce = nonce or os.urandom(_NONCE)
        if algorithm == AES_256_GCM:
            aes = self._aes.get(key_id)
            if aes is None:
                aes = self._aes[key_id] = AESGCM(key)
            return nonce + aes.encrypt(nonce, plaintext, aad)
        enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        return nonce + enc.update(plaintext) + enc.finalize() + enc.tag

    def _decrypt(self, key_id: str, algorithm: str, blob: bytes, aad: bytes) -> bytes:
        key = self.keys[key_id]
        nonce, rest = blob[:_NONCE], blob[_NONCE:]
        if algorithm == AES_256_GCM:
            aes = self._aes.get(key_id)
            if aes is None:
                aes = self._aes[key_id] = AESGCM(key)
            return aes.decrypt(nonce, rest, aad)
        if algorithm == SM4_GCM:
            if len(rest) < _TAG:
                raise InvalidTag()
            dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, rest[-_TAG:])).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(rest[:-_TAG]) + dec.finalize()
        raise FieldCryptError(f"unknown algorithm {algorithm!r}")

    def seal_value(self, value: Any, place: Place, field: str) -> dict[str, str]:
        aad = _aad(place.system, place.kind, place.record_key, place.version, field)
        blob = self._encrypt(self.active_key, self.algorithm, _plaintext(value), aad)
        return {MARK: self._head + _b64(blob)}

    def open_value(self, value: dict[str, str], place: Place, field: str, aad_prefix: bytes | None = None) -> Any:
        try:
            version, algorithm, key_id, encoded = value[MARK].split(":", 3)
        except ValueError:
            raise FieldCryptError(f"field {field}: not a sealed value") from None
        if version != _VERSION:
            raise FieldCryptError(f"field {field}: unknown format {version!r}")
        if key_id not in self.keys:
            raise FieldCryptError(f"field {field} of {place.kind} {place.record_key!r} (system {place.system}) is "
                                  f"encrypted with key {key_id!r}, which is not in the keyring "
                                  f"({', '.join(self.keys)})")
        try:
            prefix = aad_prefix or _aad_prefix(place.system, place.kind, place.record_key, place.version)
            plaintext = self._decrypt(key_id, algorithm, _unb64(encoded), prefix + field.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error):
            raise FieldCryptError(f"field {field} of {place.kind} {place.record_key!r} (system {place.system}) does "
                                  f"not decrypt with key {key_id!r}: it was changed or moved from another record"
                                  ) from None
        if plaintext[:1] == b'"' and b"\\" not in plaintext:  # the usual plain string, without a JSON parse
            return plaintext[1:-1].decode("utf-8")
        return json.loads(plaintext.decode("utf-8"))

    # ----------------------------------------------------------------- records

    def seal_data(self, place: Place, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a record's data with its personal fields sealed (None and absent fields stay as they are)."""
        out = dict(data)
        # Mapped data is clear by construction: whatever shape a value has, it is sealed.
        present = [f for f in self.fields.get(place.kind, ()) if out.get(f) is not None]
        if not present:
            return out
        prefix = _aad_prefix(place.system, place.kind, place.record_key, place.version)
        nonces = os.urandom(_NONCE * len(present))  # one system call per record, a fresh nonce per field
        for i, field in enumerate(present):
            nonce = nonces[i * _NONCE:(i + 1) * _NONCE]
            blob = self._encrypt(self.active_key, self.algorithm, _plaintext(out[field]),
                                 prefix + field.encode("utf-8"), nonce)
            out[field] = {MARK: self._head + _b64(blob)}
        return out

    @staticmethod
    def place_of(record: Mapping[str, Any]) -> Place:
        prov = record.get("provenance") or {}
        return Place(str(prov.get("source_system")), str(record.get("kind")), str(prov.get("source_id")),
                     int(prov.get("source_version") or 0))

    def open_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A stored record body with its sealed fields opened; raises FieldCryptError naming the field."""
        data = record.get("data")
        if not isinstance(data, dict):
            return dict(record)
        found = [k for k, v in data.items() if type(v) is dict and MARK in v]  # cheap: most values are str
        if not found:
            return dict(record)
        place = self.place_of(record)
        prefix = _aad_prefix(place.system, place.kind, place.record_key, place.version)
        opened = dict(data)
        for k in found:
            opened[k] = self.open_value(data[k], place, k, prefix)
        return {**record, "data": opened}

    def open_for_reader(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Like ``open_record``, but a field that cannot be opened reads as a note instead of failing the page."""
        try:
            return self.open_record(record)
        except FieldCryptError:
            data = record.get("data")
            if not isinstance(data, dict):
                return dict(record)
            place = self.place_of(record)
            opened = {}
            for k, v in data.items():
                if not sealed(v):
                    opened[k] = v
                    continue
                try:
                    opened[k] = self.open_value(v, place, k)
                except FieldCryptError as exc:
                    log.warning("%s", exc)
                    opened[k] = "«encrypted; cannot be opened with this gateway's keyring»"
            return {**record, "data": opened}

    def reseal_record(self, record: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, int]]:
        """(the body re-sealed under the active key, or None if it already is; fields per former key id or 'clear')."""
        data = record.get("data")
        if not isinstance(data, dict):
            return None, {}
        place = self.place_of(record)
        changed: dict[str, int] = {}
        out = dict(data)
        for field in self.fields.get(place.kind, ()):
            value = data.get(field)
            if value is None:
                continue
            if sealed(value):
                key_id = value[MARK].split(":", 3)[2] if value[MARK].count(":") >= 3 else "?"
                algorithm = value[MARK].split(":", 3)[1] if value[MARK].count(":") >= 3 else "?"
                if key_id == self.active_key and algorithm == self.algorithm:
                    continue
                plain = self.open_value(value, place, field)
                changed[key_id] = changed.get(key_id, 0) + 1
            else:
                plain = value
                changed["clear"] = changed.get("clear", 0) + 1
            out[field] = self.seal_value(plain, place, field)
        if not changed:
            return None, {}
        return {**record, "data": out}, changed


def has_sealed(record: Mapping[str, Any]) -> bool:
    """Whether a stored body holds any sealed field (what a gateway without the keyring must not send on)."""
    data = record.get("data")
    return isinstance(data, dict) and any(sealed(v) for v in data.values())


def key_ids_of(record: Mapping[str, Any]) -> Iterable[str]:
    """The key ids a stored body's sealed fields use ('clear' for a personal field stored in clear)."""
    data = record.get("data")
    if not isinstance(data, dict):
        return []
    fields = personal_fields().get(str(record.get("kind")), ())
    found = []
    for field in fields:
        value = data.get(field)
        if value is None:
            continue
        found.append(value[MARK].split(":", 3)[2] if sealed(value) and value[MARK].count(":") >= 3 else "clear")
    return found


def cipher_from_config(config: Any) -> FieldCipher | None:
    """The cipher of a GatewayConfig's [encryption] keyring, or None when none is configured.

    With ``enabled = false`` and a keyring, stored fields still open but new records are not sealed
    (the way to turn encryption off: then `gateway encryption decrypt`).
    """
    enc = config.encryption
    if enc.keys is None:
        return None
    keys_file = config.resolve(enc.keys.file) if enc.keys.file else None
    return load_cipher(algorithm=enc.algorithm, keys_file=keys_file, keys_env=enc.keys.env,
                       active_key=enc.active_key)


def load_cipher(*, algorithm: str, keys_file: Path | None, keys_env: str | None,
                active_key: str | None) -> FieldCipher:
    """The cipher the configuration describes; FieldCryptError says what is missing or wrong."""
    if keys_file is not None:
        try:
            text = keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise FieldCryptError(f"cannot read the keyring {keys_file}: {exc.strerror or exc} (create it with "
                                  "`gateway encryption keygen`)") from exc
        where = f"keyring {keys_file}"
    else:
        assert keys_env is not None
        text = os.environ.get(keys_env, "")
        if not text.strip():
            raise FieldCryptError(f"the keyring is configured to come from environment variable {keys_env}, which "
                                  "is not set or empty")
        where = f"keyring ${keys_env}"
    return FieldCipher(parse_keyring(text, where=where), algorithm, active_key)
