"""Provider-key encryption at rest (Fernet through MultiFernet) and the masked ``Secret`` type.

The master key comes from ``FORGE_ENCRYPTION_KEY`` (comma-separated: the first encrypts, all
decrypt, which is how rotation works), else from a key file beside the database, generated
once with mode 0600. A key that cannot decrypt existing data is a startup error: silently
generating a new one would make every stored provider key unreadable.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .tracing import Tracer


class Secret:
    """A decrypted secret whose ``repr`` and ``str`` never show it (logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask(secret: str) -> str:
    """What a listing may show of a provider key: enough to recognise it, not to use it."""
    if len(secret) <= 8:
        return "****"
    return secret[:3] + "..." + secret[-4:]


class EncryptionKeyError(Exception):
    """The configured encryption key is not a Fernet key."""


class Crypto:
    """Encrypts and decrypts provider keys; counts each decryption (the one place it is counted)."""

    def __init__(self, keys: list[str], tracer: Tracer) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys if k.strip()])
        except (ValueError, TypeError):
            raise EncryptionKeyError("FORGE_ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes, "
                                     "e.g. from `forge-ref gen-key`)") from None
        self._tracer = tracer

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> Secret:
        self._tracer.decryption()
        return Secret(self._fernet.decrypt(token.encode()).decode())

    def can_decrypt(self, token: str) -> bool:
        try:
            self._fernet.decrypt(token.encode())
            return True
        except InvalidToken:
            return False

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first key (MultiFernet.rotate)."""
        return self._fernet.rotate(token.encode()).decode()


def key_file_for(db_path: str) -> Path:
    return Path(db_path + ".key")


def load_keys(configured: str, db_path: str) -> list[str]:
    """The configured keys, or the key file beside the DB, created once with mode 0600."""
    if configured.strip():
        return [k for k in configured.split(",") if k.strip()]
    path = key_file_for(db_path)
    try:
        return [path.read_text().strip()]
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # O_EXCL: two processes starting at once must not both write a key; the loser reads the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return [path.read_text().strip()]
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return [key]
