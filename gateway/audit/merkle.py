"""Merkle trees over audit entry hashes, as Certificate Transparency defines them (RFC 6962 / RFC 9162).

A seal signs the root over its range's entry hashes, so one entry can be proven with
an inclusion path of about log2(n) hashes instead of the whole range.

leaf  = H(0x00 || entry_hash_bytes)
node  = H(0x01 || left || right)
root  = RFC 6962 Merkle Tree Hash (left subtree is the largest power of two below n)

Building the tree bottom-up, pairing neighbours and lifting an odd last node unchanged,
gives exactly the RFC 6962 root; the audit path below is the RFC's PATH(m, D[n]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.audit.chain import digest_function, hash_constructor


def leaf_hashes(entry_hashes: Sequence[bytes], algorithm: str = "sha256") -> list[bytes]:
    new = hash_constructor(algorithm)
    return [new(b"\x00" + e).digest() for e in entry_hashes]


def _next_level(level: list[bytes], new: Callable[[bytes], Any]) -> list[bytes]:
    it = iter(level)
    up = [new(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]
    if len(level) % 2:
        up.append(level[-1])
    return up


def root_from_leaves(leaves: list[bytes], algorithm: str = "sha256") -> bytes:
    """Root over already-hashed leaves; the empty tree is H('') as in RFC 6962."""
    new = hash_constructor(algorithm)
    if not leaves:
        return new(b"").digest()
    level = leaves
    while len(level) > 1:
        level = _next_level(level, new)
    return level[0]


def merkle_root(entry_hashes: Sequence[bytes], algorithm: str = "sha256") -> bytes:
    return root_from_leaves(leaf_hashes(entry_hashes, algorithm), algorithm)


class MerkleTree:
    """All levels of one tree, kept so many inclusion paths can be read from it cheaply."""

    def __init__(self, entry_hashes: Sequence[bytes], algorithm: str = "sha256") -> None:
        new = hash_constructor(algorithm)
        level = leaf_hashes(entry_hashes, algorithm)
        self.size = len(level)
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = _next_level(level, new)
            self.levels.append(level)
        self.root = level[0] if level else new(b"").digest()

    def path(self, index: int) -> list[bytes]:
        """The inclusion path of leaf ``index``, from the leaf's sibling up to the root's child."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is outside a tree of {self.size} leaves")
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def root_from_path(entry_hash: bytes, index: int, size: int, path: Sequence[bytes], algorithm: str = "sha256") -> bytes:
    """Recompute the root from one entry hash and its inclusion path; raises ValueError if the path has the wrong length."""
    h = digest_function(algorithm)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    node = h(b"\x00" + entry_hash)
    used = 0
    while size > 1:
        if index % 2 == 1:
            if used >= len(path):
                raise ValueError("inclusion path is too short")
            node = h(b"\x01" + path[used] + node)
            used += 1
        elif index + 1 < size:
            if used >= len(path):
                raise ValueError("inclusion path is too short")
            node = h(b"\x01" + node + path[used])
            used += 1
        # else: the last node of an odd level is lifted unchanged
        index //= 2
        size = (size + 1) // 2
    if used != len(path):
        raise ValueError("inclusion path is too long")
    return node
