"""attestation.dsse.json: an in-toto Statement v1 over the manifest's digests, in a
DSSE envelope signed with Ed25519 (securesystemslib does the DSSE encoding and
the signature)."""

from __future__ import annotations

import json
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import Error as SslibError
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Signer, SSlibKey

from ..fileio import json_bytes

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# Ours (verdict, config, tool; docs/evidence.md). A URN: we publish no page it could point at.
PREDICATE_TYPE = "urn:bye-audit:predicate:audit-verdict:v1"


class AttestationError(Exception):
    """The attestation is unreadable, or its signature does not verify."""


def statement(subjects: dict[str, str], predicate: dict[str, Any]) -> dict[str, Any]:
    """subjects: name -> SHA-256 hex."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign(stmt: dict[str, Any], signer: Signer) -> bytes:
    """The DSSE envelope (JSON bytes) of `stmt` signed by `signer`."""
    envelope = Envelope(json_bytes(stmt), PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json_bytes(envelope.to_dict())


def open_envelope(data: bytes, key: SSlibKey) -> dict[str, Any]:
    """The statement inside `data` once its signature verifies with `key`."""
    try:
        envelope = Envelope.from_dict(json.loads(data))
    except RecursionError:
        raise AttestationError("not a DSSE envelope (JSON nested too deeply)") from None
    except (ValueError, KeyError, TypeError, AttributeError, SslibError) as e:  # e.g. "payload": 5
        raise AttestationError(f"not a DSSE envelope ({type(e).__name__}: {e})") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise AttestationError(f"payload type {envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    try:
        envelope.verify([key], 1)
    except VerificationError as e:
        raise AttestationError(f"the signature does not verify with key {key.keyid[:16]}…: "
                               "a different key signed it, or the attestation was changed") from e
    try:
        stmt = json.loads(envelope.payload)
    except (ValueError, RecursionError) as e:
        raise AttestationError(f"the signed payload is not JSON ({e})") from e
    if (not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE
            or stmt.get("predicateType") != PREDICATE_TYPE):
        raise AttestationError("the signed payload is not a bye-audit in-toto Statement v1")
    return stmt
