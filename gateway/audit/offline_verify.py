#!/usr/bin/env python3
"""Offline verifier for the exchange gateway's audit evidence: case bundles (.json) and archive files (.zip).

Standalone on purpose: it needs only the Python standard library and ``cryptography``, and
trusts nothing from the gateway. Copy this one file to any machine and run

    python offline_verify.py case-evidence.json --cert audit-seal.crt
    python offline_verify.py audit-archive-000001-….zip audit-archive-000002-….zip --cert audit-seal.crt

Exit status: 0 verified against a trusted certificate; 1 something does not verify;
2 nothing wrong found but not everything is proven (entries not yet under a signed seal,
or no trusted certificate given with --cert / --fingerprint).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

GENESIS = "0" * 64
BUNDLE_FORMAT = "gateway.audit.evidence/1"
SEAL_TYPES = ("gateway.audit.seal/1", "gateway.audit.seal/2")
ARCHIVE_TYPE = "gateway.audit.archive/1"


# ---------------------------------------------------------------------------- primitives (the published rules)


def hasher(algorithm: str):  # -> Callable[[bytes], bytes]
    """H for the chain: SHA-256 or SM3 (GB/T 32905)."""
    if algorithm == "sha256":
        return lambda data: hashlib.sha256(data).digest()
    if algorithm == "sm3":
        try:
            hashlib.new("sm3", b"")
            return lambda data: hashlib.new("sm3", data).digest()
        except ValueError:
            def sm3(data: bytes) -> bytes:
                h = hashes.Hash(hashes.SM3())
                h.update(data)
                return h.finalize()
            return sm3
    raise ValueError(f"unknown hash algorithm {algorithm!r}")


class _StreamHash:
    """Incremental H over a file (SHA-256 or SM3)."""

    def __init__(self, algorithm: str) -> None:
        self._h: Any
        if algorithm == "sha256":
            self._h = hashlib.sha256()
        else:
            try:
                self._h = hashlib.new("sm3")
            except ValueError:
                self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.digest().hex() if hasattr(self._h, "digest") else self._h.finalize().hex()


def entry_hash(h, prev_hex: str, body: bytes) -> str:
    """entry hash = H(previous entry hash, as 32 raw bytes || canonical body bytes)."""
    return h(bytes.fromhex(prev_hex) + body).hex()


def merkle_root_from_path(h, entry_hash_hex: str, index: int, size: int, path: list[str]) -> str:
    """RFC 6962 / RFC 9162 inclusion proof: leaf = H(0x00||entry hash), node = H(0x01||left||right)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size}")
    node = h(b"\x00" + bytes.fromhex(entry_hash_hex))
    used = 0
    while size > 1:
        if index % 2 == 1 or index + 1 < size:
            if used >= len(path):
                raise ValueError("inclusion path too short")
            sibling = bytes.fromhex(path[used])
            node = h(b"\x01" + sibling + node) if index % 2 == 1 else h(b"\x01" + node + sibling)
            used += 1
        index //= 2
        size = (size + 1) // 2
    if used != len(path):
        raise ValueError("inclusion path too long")
    return node.hex()


def merkle_root(h, entry_hashes: list[bytes]) -> str:
    """RFC 6962 Merkle Tree Hash over entry hashes (pairs bottom-up; an odd last node moves up unchanged)."""
    if not entry_hashes:
        return h(b"").hex()
    level = [h(b"\x00" + e) for e in entry_hashes]
    while len(level) > 1:
        nxt = [h(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def verify_signature(cert: x509.Certificate, algorithm: str, data: bytes, signature: bytes) -> None:
    key = cert.public_key()
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    elif algorithm == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey) \
            and key.curve.name == "secp256r1":
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        raise InvalidSignature(f"cannot check a {algorithm} signature with a {type(key).__name__} "
                               "(SM2 needs the signing vendor's verification tool)")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def colon(hex_text: str) -> str:
    return ":".join(hex_text[i:i + 2] for i in range(0, len(hex_text), 2)).upper()


# ---------------------------------------------------------------------------- the checks


class Checker:
    def __init__(self, trusted: set[str], anchored: bool, quiet: bool) -> None:
        self.trusted = trusted
        self.anchored = anchored
        self.quiet = quiet
        self.failures: list[str] = []
        self.unproven: list[str] = []
        self.certs: dict[str, x509.Certificate] = {}

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text)

    def fail(self, text: str) -> None:
        self.failures.append(text)
        print(f"  FAIL {text}")

    # -- certificates

    def load_certificates(self, pems: dict[str, str], where: str) -> None:
        for key_id, pem in pems.items():
            try:
                cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
            except ValueError as exc:
                self.fail(f"{where}: certificate {key_id[:16]} cannot be read ({exc})")
                continue
            actual = fingerprint(cert)
            if actual != key_id:
                self.fail(f"{where}: certificate listed as key {key_id[:16]} has fingerprint {actual[:16]}")
                continue
            if key_id in self.certs:
                continue
            self.certs[key_id] = cert
            subject = cert.subject.rfc4514_string()
            self.say(f"  certificate {subject}")
            self.say(f"    SHA-256 fingerprint {colon(key_id)}")
            self.say(f"    valid {cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}")
            if self.anchored:
                self.say("    trusted: " + ("yes, matches a trusted certificate you supplied" if key_id in self.trusted
                                          else "NO - not among the certificates you supplied"))
            else:
                self.say("    trusted: not checked - compare this fingerprint with the one the gateway operator "
                         "published, or pass --cert / --fingerprint")

    def check_signature(self, label: str, data: bytes, sig_b64: str | None, key_id: str | None,
                        algorithm: str | None, at: str | None) -> bool:
        if not sig_b64 or not key_id or not algorithm:
            return False
        cert = self.certs.get(key_id)
        if cert is None:
            self.fail(f"{label}: signed by key {key_id[:16]}, whose certificate is not in the file")
            return False
        if self.anchored and key_id not in self.trusted:
            self.fail(f"{label}: signed by key {colon(key_id)[:23]}..., which is not a trusted certificate")
            return False
        try:
            verify_signature(cert, algorithm, data, base64.b64decode(sig_b64, validate=True))
        except (InvalidSignature, ValueError):
            self.fail(f"{label}: signature invalid (statement or signature altered, or signed by another key)")
            return False
        if at:
            try:
                when = datetime.fromisoformat(at)
            except ValueError:
                self.fail(f"{label}: time {at!r} is not an ISO 8601 time")
                return False
            if when.tzinfo and not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
                self.fail(f"{label}: made at {at}, outside the certificate's validity")
                return False
        return True

    # -- seals

    def check_seals(self, seals: list[dict[str, Any]], algorithm: str, h, where: str,
                    prev: tuple[int, int, str, str] | None = None) -> dict[int, dict[str, Any]]:
        """Check each seal and the links between consecutive ones; returns {seal: statement} of the good ones."""
        good: dict[int, dict[str, Any]] = {}
        for s in seals:
            label = f"{where}seal {s.get('seal')}"
            if "statement" in s:
                raw = s["statement"].encode("utf-8")
            else:
                raw = base64.b64decode(s.get("statement_base64", ""))
            try:
                st = json.loads(raw)
            except ValueError:
                self.fail(f"{label}: statement is not valid JSON")
                prev = None
                continue
            signed = s.get("signature") is not None
            ok = True
            if signed:
                ok = self.check_signature(label, raw, s.get("signature"), s.get("key_id"),
                                          s.get("signature_algorithm"), st.get("sealed_at"))
            if ok and (st.get("type") not in SEAL_TYPES or st.get("algorithm") != algorithm
                       or (st.get("seal"), st.get("from_seq"), st.get("to_seq")) != (s.get("seal"), s.get("from_seq"),
                                                                                     s.get("to_seq"))
                       or st.get("count") != st.get("to_seq", 0) - st.get("from_seq", 0) + 1):
                self.fail(f"{label}: statement does not describe seal {s.get('seal')} over "
                          f"{s.get('from_seq')}..{s.get('to_seq')} with {algorithm}")
                ok = False
            if ok and prev is not None:
                p_seal, p_to, p_hash, p_head = prev
                if st["seal"] != p_seal + 1 or st["from_seq"] != p_to + 1:
                    self.fail(f"{label}: does not follow seal {p_seal} (ending at entry {p_to})")
                    ok = False
                elif st.get("prev_seal") != p_hash or st.get("prev_hash") != p_head:
                    self.fail(f"{label}: does not link to seal {p_seal} (previous-seal or chain hash differs)")
                    ok = False
            own = h(raw).hex()
            prev = (st.get("seal", 0), st.get("to_seq", 0), own, st.get("head_hash", ""))
            if ok:
                good[st["seal"]] = {**st, "_signed": signed}
                self.say(f"  {label} (entries {st['from_seq']}..{st['to_seq']}, sealed {st.get('sealed_at')}): "
                         + ("signature valid" if signed else "NOT SIGNED YET") + ", statement consistent")
        return good

    # -- evidence bundles

    def bundle(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.fail(f"{path}: not a readable JSON evidence bundle ({exc})")
            return
        if data.get("format") != BUNDLE_FORMAT:
            self.fail(f"{path}: format {data.get('format')!r} is not {BUNDLE_FORMAT}")
            return
        algorithm, case = data.get("algorithm"), data.get("case")
        try:
            h = hasher(algorithm)
        except ValueError as exc:
            self.fail(f"{path}: {exc}")
            return
        print(f"Evidence bundle {path.name}: case {case}, exported {data.get('exported_at')}, hash {algorithm}, "
              f"{len(data.get('entries', []))} entries, {len(data.get('seals', []))} seals")
        for note in data.get("notes", []):
            print(f"  note from the exporter: {note}")
        self.load_certificates(data.get("certificates", {}), "bundle")
        seals = self.check_seals(data.get("seals", []), algorithm, h, "")
        for e in data.get("entries", []):
            self.bundle_entry(e, case, seals, h)

    def bundle_entry(self, e: dict[str, Any], case: str, seals: dict[int, dict[str, Any]], h) -> None:
        seq = e.get("seq")
        label = f"entry {seq}"
        body = e["body"].encode("utf-8") if "body" in e else base64.b64decode(e.get("body_base64", ""))
        try:
            decoded = json.loads(body)
        except ValueError:
            self.fail(f"{label}: body is not valid JSON")
            return
        if not isinstance(decoded, dict) or decoded.get("seq") != seq:
            self.fail(f"{label}: body says seq {decoded.get('seq') if isinstance(decoded, dict) else None}")
            return
        if decoded.get("case") != case:
            self.fail(f"{label}: belongs to case {decoded.get('case')!r}, not {case!r}")
            return
        try:
            if entry_hash(h, e["prev_hash"], body) != e["hash"]:
                self.fail(f"{label}: hash does not match its body (the body or the hash was changed)")
                return
        except (KeyError, ValueError):
            self.fail(f"{label}: hash or previous hash missing or not hexadecimal")
            return
        what = f"{decoded.get('action')} at {decoded.get('at')} ({decoded.get('system')} {decoded.get('kind')} " \
               f"{decoded.get('record')})"
        seal_no = e.get("seal")
        if seal_no is None:
            self.unproven.append(f"{label}: not covered by a seal yet")
            self.say(f"  {label} {what}: hash ok, NOT YET SEALED")
            return
        st = seals.get(seal_no)
        if st is None:
            self.fail(f"{label}: its seal {seal_no} is missing or did not verify")
            return
        index, size = e.get("leaf_index"), e.get("tree_size")
        if index != seq - st["from_seq"] or size != st["count"]:
            self.fail(f"{label}: position {index} of {size} does not match seal {seal_no} "
                      f"(entries {st['from_seq']}..{st['to_seq']})")
            return
        try:
            root = merkle_root_from_path(h, e["hash"], index, size, e.get("path", []))
        except ValueError as exc:
            self.fail(f"{label}: inclusion path unusable ({exc})")
            return
        if root != st.get("merkle_root"):
            self.fail(f"{label}: inclusion path does not lead to seal {seal_no}'s Merkle root")
            return
        if not st["_signed"]:
            self.unproven.append(f"{label}: seal {seal_no} is not signed yet")
            self.say(f"  {label} {what}: hash ok, in seal {seal_no}, which is NOT SIGNED YET")
            return
        self.say(f"  {label} {what}: hash ok, proven by signed seal {seal_no}")

    # -- archive files

    def archives(self, paths: list[Path]) -> None:
        prev: dict[str, Any] | None = None
        for path in paths:
            prev = self.archive(path, prev)

    def archive(self, path: Path, prev: dict[str, Any] | None) -> dict[str, Any] | None:
        where = f"{path.name}: "
        try:
            zf = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            self.fail(f"{where}not a readable archive ({exc})")
            return None
        with zf:
            try:
                manifest_bytes = zf.read("manifest.json")
                manifest = json.loads(manifest_bytes)
                signature = json.loads(zf.read("signature.json"))
                seals_bytes = zf.read("seals.jsonl")
                cases_bytes = zf.read("cases.json")
                certs = {n.rsplit("/", 1)[-1][:-4]: zf.read(n).decode("ascii") for n in zf.namelist()
                         if n.startswith("certificates/") and n.endswith(".pem")}
            except (KeyError, ValueError, zipfile.BadZipFile) as exc:
                self.fail(f"{where}archive member missing or unreadable ({exc})")
                return None
            algorithm = manifest.get("algorithm")
            try:
                h = hasher(algorithm)
            except ValueError as exc:
                self.fail(f"{where}{exc}")
                return None
            print(f"Archive {path.name}: archive {manifest.get('archive')}, entries {manifest.get('from_seq')}.."
                  f"{manifest.get('to_seq')}, hash {algorithm}")
            self.load_certificates(certs, path.name)
            if not self.check_signature(f"{where}manifest", manifest_bytes, signature.get("signature"),
                                        signature.get("key_id"), signature.get("algorithm"),
                                        manifest.get("created_at")):
                if not any(f.startswith(f"{where}manifest") for f in self.failures):
                    self.fail(f"{where}manifest is not signed")
                return None
            if manifest.get("type") != ARCHIVE_TYPE:
                self.fail(f"{where}manifest type is not {ARCHIVE_TYPE}")
                return None
            if prev is not None:
                if manifest.get("prev_archive") != h(prev["_bytes"]).hex():
                    self.fail(f"{where}does not link to {prev['_name']} (previous-archive hash differs)")
                if manifest.get("prev_hash") != prev.get("last_hash"):
                    self.fail(f"{where}does not start where {prev['_name']} ended")
            if h(seals_bytes).hex() != manifest.get("seals_hash") or h(cases_bytes).hex() != manifest.get("cases_hash"):
                self.fail(f"{where}seals or case index differ from the signed manifest")
            seal_list = [json.loads(line) for line in seals_bytes.splitlines() if line.strip()]
            before = (prev["last_seal"], prev["to_seq"], prev["last_seal_hash"], prev["last_hash"]) if prev else None
            good = self.check_seals(seal_list, algorithm, h, where, before)
            self.archive_entries(zf, manifest, good, h, where)
        return {**manifest, "_bytes": manifest_bytes, "_name": path.name}

    def archive_entries(self, zf: zipfile.ZipFile, manifest: dict[str, Any], seals: dict[int, dict[str, Any]],
                        h, where: str) -> None:
        ranges = sorted((st["from_seq"], st["to_seq"], st) for st in seals.values())
        leaves: list[bytes] = []
        r = 0
        seq, prev = manifest["from_seq"], manifest["prev_hash"]
        file_hash = _StreamHash(manifest["algorithm"])
        with zf.open("entries.jsonl") as fh:
            for line in fh:
                file_hash.update(line)
                hx, body = line[:64].decode("ascii", "replace"), line[65:].rstrip(b"\n")
                try:
                    ok = entry_hash(h, prev, body) == hx
                except ValueError:
                    ok = False
                if not ok:
                    self.fail(f"{where}entry {seq}: hash does not match its body")
                    return
                try:
                    body_seq = json.loads(body).get("seq")
                except (ValueError, AttributeError):
                    body_seq = None
                if body_seq != seq:
                    self.fail(f"{where}entry {seq}: body says seq {body_seq}")
                    return
                while r < len(ranges) and ranges[r][1] < seq:
                    r += 1
                if r < len(ranges) and ranges[r][0] <= seq:
                    leaves.append(bytes.fromhex(hx))
                    if seq == ranges[r][1]:
                        st = ranges[r][2]
                        if merkle_root(h, leaves) != st["merkle_root"] or st["head_hash"] != hx:
                            self.fail(f"{where}seal {st['seal']}: Merkle root or head hash does not match "
                                      f"entries {st['from_seq']}..{st['to_seq']}")
                        elif not st["_signed"]:
                            self.unproven.append(f"{where}seal {st['seal']} is not signed")
                        leaves = []
                        r += 1
                prev = hx
                seq += 1
        if seq != manifest["to_seq"] + 1:
            self.fail(f"{where}entries {seq}..{manifest['to_seq']} missing")
            return
        if file_hash.hexdigest() != manifest.get("entries_hash"):
            self.fail(f"{where}entries file differs from the signed manifest")
        if prev != manifest.get("last_hash"):
            self.fail(f"{where}last entry hash differs from the signed manifest")
        covered = sum(st["to_seq"] - st["from_seq"] + 1 for st in seals.values())
        if covered != manifest["count"]:
            self.fail(f"{where}seals cover {covered} of {manifest['count']} entries")
        self.say(f"  {manifest['count']} entries: chain intact, every seal's Merkle root matches")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify gateway audit evidence bundles (.json) or archives (.zip) "
                                                 "offline.")
    parser.add_argument("files", nargs="+", type=Path, help="one evidence bundle, or archive files in order")
    parser.add_argument("--cert", action="append", default=[], type=Path,
                        help="a trusted seal certificate (PEM), obtained from the gateway operator out of band")
    parser.add_argument("--fingerprint", action="append", default=[],
                        help="a trusted certificate's SHA-256 fingerprint (hex, colons allowed)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures and the verdict")
    args = parser.parse_args(argv)
    trusted: set[str] = {f.replace(":", "").lower() for f in args.fingerprint}
    for file in args.cert:
        try:
            for cert in x509.load_pem_x509_certificates(file.read_bytes()):
                trusted.add(fingerprint(cert))
        except (OSError, ValueError) as exc:
            print(f"cannot read trusted certificate {file}: {exc}", file=sys.stderr)
            return 1
    checker = Checker(trusted, bool(args.cert or args.fingerprint), args.quiet)
    try:
        if all(f.suffix.lower() == ".zip" for f in args.files):
            checker.archives(args.files)
        elif len(args.files) == 1:
            checker.bundle(args.files[0])
        else:
            print("give one evidence bundle (.json) or one or more archive files (.zip)", file=sys.stderr)
            return 1
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A field of the wrong type or missing: the file was not written by the gateway, or was altered.
        checker.fail(f"malformed evidence ({type(exc).__name__}: {exc})")
    if checker.failures:
        print(f"VERDICT: FAILED - {len(checker.failures)} problem(s); the first: {checker.failures[0]}")
        return 1
    if checker.unproven:
        print(f"VERDICT: INCOMPLETE - nothing altered was found, but {len(checker.unproven)} item(s) are not "
              f"proven yet; the first: {checker.unproven[0]}")
        return 2
    if not checker.anchored:
        print("VERDICT: INTACT, SIGNER NOT CONFIRMED - every entry matches seals signed by the certificate shown "
              "above; confirm its fingerprint with the gateway operator (or pass --cert) to complete the proof")
        return 2
    print("VERDICT: VERIFIED - every entry is intact and covered by seals signed with a trusted certificate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
