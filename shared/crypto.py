"""The key ring: AES-GCM with key ids (for Temporal payloads and PII columns), blind indexes,
the audit-chain key and the development token-signing key.

Several data keys can be readable at once; exactly one is active for writing. `nrm keys rotate`
adds a key and makes it active, so old ciphertexts stay readable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Version byte of the column ciphertext layout (both: version | len(kid) | kid | nonce | ct):
#   01: bound to the column (AAD = kid | column). Written when no row is given; always readable.
#   02: bound to the column and the row (AAD = kid | column | 0x00 "row" 0x00 | row id), so a ciphertext
#       copied into another row of the same column fails to decrypt.
_FORMAT = b"\x01"
_FORMAT_ROW = b"\x02"


class CryptoError(Exception):
    """A ciphertext that cannot be decrypted: unknown key id, or tampered data."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode())


def new_key_id(existing: set[str]) -> str:
    n = len(existing) + 1
    while f"k{n}" in existing:
        n += 1
    return f"k{n}"


@dataclass
class KeyRing:
    data_keys: dict[str, bytes]
    active_key_id: str
    blind_index_key: bytes
    audit_key: bytes
    signing_key_pem: bytes
    _aes: dict[str, AESGCM] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.active_key_id not in self.data_keys:
            raise CryptoError(f"active key id {self.active_key_id!r} is not in the key ring")
        for kid, key in self.data_keys.items():
            if len(key) != 32:
                raise CryptoError(f"key {kid!r} must be 32 bytes (AES-256)")
        self._aes = {kid: AESGCM(key) for kid, key in self.data_keys.items()}

    # ---- construction and persistence -------------------------------------------------
    @classmethod
    def generate(cls) -> KeyRing:
        signing = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            {"k1": AESGCM.generate_key(256)},
            "k1",
            secrets.token_bytes(32),
            secrets.token_bytes(32),
            signing,
        )

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        raw: dict[str, Any] = json.loads(text)
        try:
            return cls(
                {kid: _unb64(v) for kid, v in raw["data_keys"].items()},
                raw["active_key_id"],
                _unb64(raw["blind_index_key"]),
                _unb64(raw["audit_key"]),
                raw["signing_key_pem"].encode(),
            )
        except KeyError as exc:
            raise CryptoError(f"key ring is missing {exc.args[0]!r}") from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "data_keys": {kid: _b64(k) for kid, k in self.data_keys.items()},
                "active_key_id": self.active_key_id,
                "blind_index_key": _b64(self.blind_index_key),
                "audit_key": _b64(self.audit_key),
                "signing_key_pem": self.signing_key_pem.decode(),
            },
            indent=2,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
        os.replace(tmp, path)

    def rotated(self) -> KeyRing:
        kid = new_key_id(set(self.data_keys))
        keys = {**self.data_keys, kid: AESGCM.generate_key(256)}
        return KeyRing(keys, kid, self.blind_index_key, self.audit_key, self.signing_key_pem)

    # ---- AES-GCM -----------------------------------------------------------------------
    def encrypt_bytes(self, plaintext: bytes, context: bytes = b"") -> tuple[str, bytes]:
        """Returns (key id, nonce + ciphertext). The key id and context are bound as AAD."""
        kid = self.active_key_id
        nonce = os.urandom(12)
        return kid, nonce + self._aes[kid].encrypt(nonce, plaintext, kid.encode() + context)

    def decrypt_bytes(self, kid: str, blob: bytes, context: bytes = b"") -> bytes:
        aes = self._aes.get(kid)
        if aes is None:
            raise CryptoError(f"unknown key id {kid!r}: this key ring holds {sorted(self._aes)}")
        try:
            return aes.decrypt(blob[:12], blob[12:], kid.encode() + context)
        except InvalidTag:
            raise CryptoError(
                f"ciphertext under key {kid!r} failed authentication (tampered or wrong context)"
            ) from None

    @staticmethod
    def _field_context(column: str, row: str | None) -> bytes:
        return column.encode() if row is None else column.encode() + b"\x00row\x00" + row.encode()

    def encrypt_field(
        self, value: str | None, column: str, *, row: str | None = None
    ) -> bytes | None:
        """For a PII column: self-describing bytes, bound to the column name and, with `row` (the row's
        primary key, e.g. a person id), to that row: decrypting it in another row fails."""
        if value is None:
            return None
        kid, blob = self.encrypt_bytes(value.encode(), self._field_context(column, row))
        k = kid.encode()
        return (_FORMAT if row is None else _FORMAT_ROW) + bytes([len(k)]) + k + blob

    def decrypt_field(
        self, data: bytes | None, column: str, *, row: str | None = None
    ) -> str | None:
        """Decrypt what encrypt_field wrote. A row-bound ciphertext (02) needs the same `row`; a column-only
        one (01, written before row binding) decrypts whatever `row` is given, so existing data stays
        readable."""
        if data is None:
            return None
        version = data[:1]
        if version not in (_FORMAT, _FORMAT_ROW):
            raise CryptoError("not an NRM field ciphertext")
        if version == _FORMAT_ROW and row is None:
            raise CryptoError("this ciphertext is bound to a row: give row= to decrypt it")
        n = data[1]
        kid = data[2 : 2 + n].decode()
        context = self._field_context(column, row if version == _FORMAT_ROW else None)
        return self.decrypt_bytes(kid, data[2 + n :], context).decode()

    # ---- keyed hashes ------------------------------------------------------------------
    def blind_index(self, value: str, purpose: str) -> str:
        """Keyed hash for equality search on an encrypted column (never the plain text)."""
        return hmac.new(
            self.blind_index_key, f"{purpose}\x00{value}".encode(), hashlib.sha256
        ).hexdigest()[:40]

    def audit_mac(self, message: bytes) -> str:
        return hmac.new(self.audit_key, message, hashlib.sha256).hexdigest()

    # ---- token signing (development issuer) --------------------------------------------
    def signing_private_key(self) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.signing_key_pem, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key


def normalise_text(value: str) -> str:
    """Accent-insensitive, case-insensitive, whitespace-folded form (Vietnamese đ -> d too)."""
    decomposed = unicodedata.normalize("NFKD", value.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())


def normalise_identity_number(value: str) -> str:
    return "".join(c for c in value.upper() if c.isalnum())


def load_keyring(path: Path, create: bool = False) -> KeyRing:
    """The key ring from `NRM_KEYRING_JSON` (production secret), else from the file."""
    env = os.environ.get("NRM_KEYRING_JSON")
    if env:
        return KeyRing.from_json(env)
    if path.exists():
        return KeyRing.from_json(path.read_text())
    if not create:
        raise CryptoError(f"no key ring at {path}: run `nrm up` once, or set NRM_KEYRING_JSON")
    ring = KeyRing.generate()
    ring.save(path)
    return ring
