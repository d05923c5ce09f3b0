import base64
import json

import pytest

from auditor.evidence.attestation import (PAYLOAD_TYPE, STATEMENT_TYPE, AttestationError, open_envelope, sign,
                                          statement)
from auditor.evidence.keys import generate, load_public_key, load_signer


@pytest.fixture
def keys(tmp_path):
    out = []
    for name in "ab":
        pair = generate()
        (tmp_path / f"{name}.key").write_bytes(pair.private_pem)
        (tmp_path / f"{name}.pub").write_bytes(pair.public_pem)
        out.append((load_signer(tmp_path / f"{name}.key"), load_public_key(tmp_path / f"{name}.pub")))
    return out


def test_a_signed_statement_opens_with_its_key_only(keys):
    (signer, public), (_, other) = keys
    stmt = statement({"outputs/report.html": "ab" * 32}, {"verdict": "fail"})
    envelope = sign(stmt, signer)
    doc = json.loads(envelope)
    assert doc["payloadType"] == PAYLOAD_TYPE and len(doc["signatures"]) == 1
    opened = open_envelope(envelope, public)
    assert opened == stmt and opened["_type"] == STATEMENT_TYPE
    assert opened["subject"] == [{"name": "outputs/report.html", "digest": {"sha256": "ab" * 32}}]
    with pytest.raises(AttestationError, match="does not verify"):
        open_envelope(envelope, other)


def test_a_changed_payload_fails_the_signature(keys):
    (signer, public), _ = keys
    doc = json.loads(sign(statement({"outputs/a": "00" * 32}, {"verdict": "pass"}), signer))
    forged = json.loads(base64.b64decode(doc["payload"]))
    forged["predicate"]["verdict"] = "fail"
    doc["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    with pytest.raises(AttestationError, match="does not verify"):
        open_envelope(json.dumps(doc).encode(), public)


def test_signing_is_deterministic(keys):
    (signer, _), _ = keys
    stmt = statement({"outputs/a": "00" * 32}, {"verdict": "pass"})
    assert sign(stmt, signer) == sign(stmt, signer)  # Ed25519: same key and bytes, same signature


@pytest.mark.parametrize("junk",
                         [b"", b"{}", b"[1]", b'{"payload": "!!", "payloadType": "x", "signatures": []}'])
def test_junk_is_an_attestation_error_not_a_crash(keys, junk):
    (_, public), _ = keys
    with pytest.raises(AttestationError):
        open_envelope(junk, public)
