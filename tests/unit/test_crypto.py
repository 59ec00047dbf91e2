"""The key ring: field encryption, rotation, failures with clear messages, blind indexes, text folding."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.crypto import (
    CryptoError,
    KeyRing,
    load_keyring,
    normalise_identity_number,
    normalise_text,
)

COLUMN = "person.full_name"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


def test_field_round_trip(ring: KeyRing) -> None:
    for value in ("Nguyễn Thị Đào", "", "0912 345 678", "a" * 10_000):
        blob = ring.encrypt_field(value, COLUMN)
        assert isinstance(blob, bytes)
        assert value.encode() not in blob or value == ""
        assert ring.decrypt_field(blob, COLUMN) == value


def test_none_stays_none(ring: KeyRing) -> None:
    assert ring.encrypt_field(None, COLUMN) is None
    assert ring.decrypt_field(None, COLUMN) is None


def test_same_value_encrypts_differently_each_time(ring: KeyRing) -> None:
    a, b = ring.encrypt_field("Đào", COLUMN), ring.encrypt_field("Đào", COLUMN)
    assert a != b
    assert ring.decrypt_field(a, COLUMN) == ring.decrypt_field(b, COLUMN) == "Đào"


def test_ciphertext_is_bound_to_its_column(ring: KeyRing) -> None:
    blob = ring.encrypt_field("Đào", COLUMN)
    with pytest.raises(CryptoError, match=r"failed authentication \(tampered or wrong context\)"):
        ring.decrypt_field(blob, "person.address")


def test_rotation_keeps_old_ciphertexts_readable(ring: KeyRing) -> None:
    old_blob = ring.encrypt_field("before rotation", COLUMN)
    rotated = ring.rotated()
    assert rotated.active_key_id == "k2"
    assert set(rotated.data_keys) == {"k1", "k2"}
    assert rotated.blind_index_key == ring.blind_index_key and rotated.audit_key == ring.audit_key

    new_blob = rotated.encrypt_field("after rotation", COLUMN)
    assert new_blob is not None and new_blob[2:4] == b"k2"  # layout: 01 | len | kid | nonce | ct
    assert rotated.decrypt_field(old_blob, COLUMN) == "before rotation"
    assert rotated.decrypt_field(new_blob, COLUMN) == "after rotation"

    twice = rotated.rotated()
    assert twice.active_key_id == "k3"
    assert twice.decrypt_field(old_blob, COLUMN) == "before rotation"


def test_unknown_key_id_is_named(ring: KeyRing) -> None:
    new_blob = ring.rotated().encrypt_field("written with k2", COLUMN)
    with pytest.raises(CryptoError, match=r"unknown key id 'k2': this key ring holds \['k1'\]"):
        ring.decrypt_field(new_blob, COLUMN)


def test_another_rings_key_with_the_same_id_fails_authentication(ring: KeyRing) -> None:
    blob = KeyRing.generate().encrypt_field("someone else's", COLUMN)  # also "k1", different key
    with pytest.raises(CryptoError, match=r"ciphertext under key 'k1' failed authentication"):
        ring.decrypt_field(blob, COLUMN)


@pytest.mark.parametrize("position", [-1, -20, 10])  # tag, ciphertext body, nonce
def test_tampered_ciphertext_raises(ring: KeyRing, position: int) -> None:
    blob = bytearray(ring.encrypt_field("Nguyễn Thị Đào, born 1990", COLUMN) or b"")
    blob[position] ^= 0x01
    with pytest.raises(CryptoError, match="failed authentication"):
        ring.decrypt_field(bytes(blob), COLUMN)


def test_tampered_key_id_raises(ring: KeyRing) -> None:
    blob = bytearray(ring.rotated().encrypt_field("x", COLUMN) or b"")
    blob[3] = ord("1")  # k2 -> k1: the key id is bound as AAD
    with pytest.raises(CryptoError, match="failed authentication"):
        ring.rotated().decrypt_field(bytes(blob), COLUMN)


def test_not_a_field_ciphertext(ring: KeyRing) -> None:
    with pytest.raises(CryptoError, match="not an NRM field ciphertext"):
        ring.decrypt_field(b"plain text in a bytea column", COLUMN)


def test_blind_index_is_deterministic_keyed_and_purpose_bound(ring: KeyRing) -> None:
    a = ring.blind_index("001190012345", "identity_number")
    assert a == ring.blind_index("001190012345", "identity_number")
    assert len(a) == 40 and int(a, 16) >= 0
    assert "001190012345" not in a
    assert a != ring.blind_index("001190012346", "identity_number")
    assert a != ring.blind_index("001190012345", "phone"), (
        "the same value under another purpose differs"
    )
    assert a != KeyRing.generate().blind_index("001190012345", "identity_number"), (
        "another ring, another index"
    )
    assert ring.rotated().blind_index("001190012345", "identity_number") == a, (
        "rotation keeps indexes stable"
    )


def test_normalise_text_is_accent_and_case_insensitive_for_vietnamese() -> None:
    assert normalise_text("Nguyễn Thị Đào") == "nguyen thi dao"
    assert normalise_text("  NGUYỄN   thị\tđào ") == "nguyen thi dao"
    assert normalise_text("Trần Văn Được") == normalise_text("tran van duoc")
    # composed and decomposed Unicode fold to the same text
    assert normalise_text("Nguye\u0302\u0303n") == normalise_text("Nguy\u1ec5n") == "nguyen"


def test_blind_index_of_normalised_names_matches_across_spellings(ring: KeyRing) -> None:
    idx = ring.blind_index(normalise_text("Nguyễn Thị Đào"), "name")
    assert idx == ring.blind_index(normalise_text("nguyen thi dao"), "name")


def test_normalise_identity_number() -> None:
    assert normalise_identity_number(" 001-190 012.345 ") == "001190012345"
    assert normalise_identity_number("b1234567") == "B1234567"


def test_json_round_trip(ring: KeyRing) -> None:
    rotated = ring.rotated()
    copy = KeyRing.from_json(rotated.to_json())
    assert copy.active_key_id == "k2" and copy.data_keys == rotated.data_keys
    assert copy.decrypt_field(rotated.encrypt_field("x", COLUMN), COLUMN) == "x"
    assert copy.blind_index("v", "p") == rotated.blind_index("v", "p")


def test_incomplete_key_ring_is_named() -> None:
    with pytest.raises(CryptoError, match="key ring is missing 'audit_key'"):
        KeyRing.from_json(
            '{"data_keys": {"k1": "'
            + "A" * 43
            + '="}, "active_key_id": "k1", "blind_index_key": "",'
            ' "signing_key_pem": ""}'
        )


def test_active_key_must_exist(ring: KeyRing) -> None:
    with pytest.raises(CryptoError, match="active key id 'k9' is not in the key ring"):
        KeyRing(ring.data_keys, "k9", ring.blind_index_key, ring.audit_key, ring.signing_key_pem)


def test_keys_must_be_aes_256(ring: KeyRing) -> None:
    with pytest.raises(CryptoError, match="key 'k1' must be 32 bytes"):
        KeyRing({"k1": b"short"}, "k1", ring.blind_index_key, ring.audit_key, ring.signing_key_pem)


def test_load_keyring_creates_a_private_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NRM_KEYRING_JSON", raising=False)
    path = tmp_path / "keys" / "keyring.json"
    with pytest.raises(CryptoError, match=r"no key ring at .*keyring\.json"):
        load_keyring(path)
    created = load_keyring(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_keyring(path, create=True)
    assert again.data_keys == created.data_keys and again.blind_index_key == created.blind_index_key


def test_load_keyring_prefers_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ring: KeyRing
) -> None:
    monkeypatch.setenv("NRM_KEYRING_JSON", ring.to_json())
    assert load_keyring(tmp_path / "absent.json").data_keys == ring.data_keys


# ---- row binding (issue 10: ciphertexts were bound to the column, not the row) ----------------
def test_ciphertext_moved_to_another_row_fails_to_decrypt(ring: KeyRing) -> None:
    blob = ring.encrypt_field("Nguyễn Thị Đào", COLUMN, row="person-a")
    assert blob is not None and blob[:1] == b"\x02"
    assert ring.decrypt_field(blob, COLUMN, row="person-a") == "Nguyễn Thị Đào"
    with pytest.raises(CryptoError, match="failed authentication"):
        ring.decrypt_field(blob, COLUMN, row="person-b")
    with pytest.raises(CryptoError, match="bound to a row"):
        ring.decrypt_field(blob, COLUMN)
    with pytest.raises(CryptoError, match="failed authentication"):
        ring.decrypt_field(blob, "person.address", row="person-a")


def test_column_only_ciphertexts_written_before_row_binding_still_decrypt(ring: KeyRing) -> None:
    legacy = ring.encrypt_field("written before row binding", COLUMN)
    assert legacy is not None and legacy[:1] == b"\x01"
    assert ring.decrypt_field(legacy, COLUMN) == "written before row binding"
    assert ring.decrypt_field(legacy, COLUMN, row="person-a") == "written before row binding"
    assert (
        ring.rotated().decrypt_field(ring.encrypt_field("x", COLUMN, row="r1"), COLUMN, row="r1")
        == "x"
    )


def test_row_and_column_cannot_be_confused(ring: KeyRing) -> None:
    # the separator keeps (column "a", row "b") apart from a column named "a\x00row\x00b" without a row
    blob = ring.encrypt_field("v", "a", row="b")
    with pytest.raises(CryptoError):
        ring.decrypt_field(blob, "a\x00row", row="b")
