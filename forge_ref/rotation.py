"""Encryption-key rotation: re-encrypt every stored provider key under the first configured key.

The procedure (README, "Rotating the encryption key"):

1. ``forge-ref gen-key`` prints a new Fernet key NEW.
2. Restart the servers with ``FORGE_ENCRYPTION_KEY="NEW,OLD"``: they decrypt both, encrypt new
   writes under NEW.
3. ``FORGE_ENCRYPTION_KEY="NEW,OLD" forge-ref rotate-encryption-key``, while they serve.
4. Restart with ``FORGE_ENCRYPTION_KEY=NEW``: OLD can be destroyed.

Each row is one compare-and-swap ``UPDATE ... WHERE id = ? AND encrypted_key = <what was
read>``: a provider key changed by a user between the read and the write is not overwritten
with the rotated old secret; that row is read again in the next pass (written by a server in
step 2, it is usually under NEW already). Passes repeat until every row decrypts under NEW
alone, which is also the check that step 4 is safe.

Caches need no invalidation. A cached service holds rows with the old ciphertext and, once
used, the decrypted secret. The plaintext does not change, so a decrypted secret stays right;
a cached old ciphertext stays decryptable by every server of step 2 (they hold OLD), and the
only way to drop OLD is the restart of step 4, which empties every cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from .crypto import Crypto

MAX_PASSES = 5


@dataclass
class RotationReport:
    rows: int = 0  # provider keys in the store at the last pass
    rotated: int = 0  # UPDATEs that took
    already: int = 0  # rows already under the first key (skipped)
    raced: int = 0  # rows changed by someone else between read and write (re-read next pass)
    undecryptable: int = 0  # rows no configured key can decrypt (left alone)
    raced_left: int = 0  # rows still racing after the last pass
    passes: int = 0

    @property
    def done(self) -> bool:
        """Every row now decrypts under the first key alone: the old key(s) can be dropped."""
        return self.undecryptable == 0 and self.raced_left == 0


async def rotate_all(store, keys: list[str], crypto: Crypto) -> RotationReport:
    """Re-encrypt every row not yet under ``keys[0]``; see the module docstring."""
    first = Fernet(keys[0].strip().encode())
    report = RotationReport()
    for _ in range(MAX_PASSES):
        report.passes += 1
        pending = 0
        report.undecryptable = 0
        rows = await store.all_encrypted_keys()
        report.rows = len(rows)
        for key_id, _user_id, token in rows:
            try:
                first.decrypt(token.encode())
                report.already += report.passes == 1
                continue
            except InvalidToken:
                pass
            if not crypto.can_decrypt(token):
                report.undecryptable += 1
                continue
            if await store.swap_encrypted_key(key_id, token, crypto.rotate(token)):
                report.rotated += 1
            else:
                report.raced += 1
                pending += 1
        report.raced_left = pending
        if pending == 0:
            break
    return report
