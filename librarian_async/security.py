"""Password hashes for our users and encryption of the credentials we hold for peers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

from librarian_async.errors import ConfigError

# scrypt cost: slow enough at rest (~50 ms), cheap enough with the API's short-lived cache.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (hex), salted per user."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def fernet_for(key: bytes | None) -> Fernet:
    """A Fernet cipher for LIBRARIAN_ENCRYPTION_KEY.

    A proper Fernet key is used as is; any other non-empty secret is stretched with SHA-256,
    so an operator may also use a long passphrase.
    """
    if not key:
        raise ConfigError(
            "LIBRARIAN_ENCRYPTION_KEY: required to store or read peer credentials; "
            "set it (or LIBRARIAN_ENCRYPTION_KEY_FILE)"
        )
    try:
        return Fernet(key)
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key).digest()))


def encrypt_secret(key: bytes | None, secret: str) -> str:
    return fernet_for(key).encrypt(secret.encode()).decode()


def decrypt_secret(key: bytes | None, token: str) -> str:
    try:
        return fernet_for(key).decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ConfigError(
            "LIBRARIAN_ENCRYPTION_KEY: cannot decrypt stored peer credentials "
            "(was the key changed?)"
        ) from error
