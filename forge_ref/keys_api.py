"""``/v1/users/me/keys``: a user's Forge keys, each with an optional scope of provider names.

A key is shown once, when it is made; listings show its prefix. ``providers`` names the providers
a key may use (null: all); the proxy refuses the others with 403 ``provider_not_allowed``
(``ProxyHandler._target``). A new scope or a revoked key drops exactly that key's ``user`` entry,
in every process and node (``Invalidator.forge_key_changed``); a new name drops nothing, as no
cache holds it. Only an unscoped key manages keys (``BaseHandler.owner``).
"""

from __future__ import annotations

from . import validation
from .auth import display_prefix, hash_key, new_key
from .errors import NotFound
from .handlers import BaseHandler
from .store import ForgeKey

MAX_ID = 2**63 - 1  # a BIGINT: a larger id names no key (and must not overflow the query)


def key_json(key: ForgeKey, secret: str | None = None) -> dict:
    out = {"id": key.id, "name": key.name, "key_prefix": key.key_prefix,
           "providers": None if key.providers is None else list(key.providers), "created_at": int(key.created_at)}
    if secret is not None:
        out["key"] = secret
    return out


def _key_id(raw: str) -> int:
    if raw.isascii() and raw.isdigit() and int(raw) <= MAX_ID:
        return int(raw)
    raise NotFound("no Forge key with this id", code="key_not_found")


class KeysHandler(BaseHandler):
    async def get(self) -> None:
        user = await self.user()
        keys = await self.gw.store.forge_keys(user.id)
        self.send_json({"object": "list", "data": [key_json(k) for k in keys]})

    async def post(self) -> None:
        user = await self.owner()
        name, providers = validation.new_forge_key(self.json_body())
        key = new_key()
        row = await self.gw.store.add_forge_key(user.id, name, hash_key(key), display_prefix(key), providers)
        self.send_json(key_json(row, key), status=201)


class KeyHandler(BaseHandler):
    async def patch(self, key_id: str) -> None:
        user = await self.owner()
        changes = validation.forge_key_changes(self.json_body())
        row = await self.gw.store.update_forge_key(user.id, _key_id(key_id), changes)
        if row is None:
            raise NotFound("no Forge key with this id", code="key_not_found")
        if "providers" in changes:
            await self.gw.invalidator.forge_key_changed(row.key_hash)
        self.send_json(key_json(row))

    async def delete(self, key_id: str) -> None:
        user = await self.owner()
        key_hash = await self.gw.store.delete_forge_key(user.id, _key_id(key_id))
        if key_hash is None:
            raise NotFound("no Forge key with this id", code="key_not_found")
        await self.gw.invalidator.forge_key_changed(key_hash)
        self.set_status(204)
        self.finish()
