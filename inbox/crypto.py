"""Encryption at rest for inbox secrets (mail passwords, bot tokens, sessions) with Fernet.

The key is derived from SECRET_KEY with HKDF, so rotating SECRET_KEY needs a re-encryption (not done silently).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from inbox.errors import SecretError


def _fernet(secret_key: str) -> Fernet:
    if not secret_key:
        raise SecretError("no SECRET_KEY configured")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"helpline-secrets-v1", info=b"inbox-secrets")
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())))


def encrypt_json(secret_key: str, data: dict[str, Any]) -> str:
    return _fernet(secret_key).encrypt(json.dumps(data).encode()).decode()


def decrypt_json(secret_key: str, token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        value = json.loads(_fernet(secret_key).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretError("stored secret cannot be decrypted: was SECRET_KEY changed?") from exc
    if not isinstance(value, dict):
        raise SecretError("stored secret is not a JSON object")
    return value


def encrypt_text(secret_key: str, text: str) -> str:
    return _fernet(secret_key).encrypt(text.encode()).decode()


def decrypt_text(secret_key: str, token: str) -> str:
    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError("stored secret cannot be decrypted: was SECRET_KEY changed?") from exc
