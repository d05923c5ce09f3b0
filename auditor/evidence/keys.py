"""Ed25519 keys for signing audit bundles, via securesystemslib (PEM, PKCS#8 / SPKI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (Encoding, PublicFormat, load_pem_private_key,
                                                          load_pem_public_key)
from securesystemslib.signer import CryptoSigner, SSlibKey

from ..errors import AuditInputError

PRIVATE_NAME = "bye-audit.key"
PUBLIC_NAME = "bye-audit.pub"
SIGNER_NAME = "bye-audit.signer"  # beside both keys: who holds them, as `keygen --signer` was told
MAX_SIGNER = 200


def check_signer(name: str) -> str:
    """A signer's name as it will be printed: one line of at most MAX_SIGNER
    printable characters, e.g. "Ada Lovelace <ada@example.org>"."""
    name = name.strip()
    if not name or len(name) > MAX_SIGNER or not name.isprintable():
        raise AuditInputError(f"--signer {name[:40]!r}: give one line of at most {MAX_SIGNER} printable "
                              'characters, e.g. "Ada Lovelace <ada@example.org>"')
    return name


def signer_name(key_path: Path) -> str | None:
    """The name stored beside a key by `keygen --signer` (None when there is none)."""
    path = Path(key_path).with_name(SIGNER_NAME)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise AuditInputError(f"{path}: unreadable ({e}); remove it or write the signer's name in it"
                              ) from None
    try:
        return check_signer(text)
    except AuditInputError:
        raise AuditInputError(f"{path}: not one printable line of at most {MAX_SIGNER} characters; write the "
                              "signer's name in it") from None


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # PKCS#8, unencrypted: keep it 0600 and out of the bundle
    public_pem: bytes  # SubjectPublicKeyInfo
    keyid: str


def generate() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    signer = CryptoSigner(key, SSlibKey.from_crypto(key.public_key(), scheme="ed25519"))
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(signer.private_bytes, public_pem, signer.public_key.keyid)


def load_signer(path: Path) -> CryptoSigner:
    """The signer of a private key file written by `keygen`."""
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise AuditInputError(f"{path}: not a readable unencrypted PEM private key ({e}); "
                              "make one with `bye-audit keygen --out DIR`") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditInputError(f"{path}: is not an Ed25519 private key; make one with `bye-audit keygen`")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key(), scheme="ed25519"))


def load_public_key(path: Path) -> SSlibKey:
    """The verification key of a public key file written by `keygen`."""
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise AuditInputError(f"{path}: not a readable PEM public key ({e}); pass the .pub file "
                              "that `bye-audit keygen` wrote") from e
    if not isinstance(key, Ed25519PublicKey):
        raise AuditInputError(f"{path}: is not an Ed25519 public key; pass the .pub file of `bye-audit "
                              "keygen`")
    return SSlibKey.from_crypto(key, scheme="ed25519")
