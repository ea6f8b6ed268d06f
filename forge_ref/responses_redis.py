"""The ``responses`` layer's answers in Redis (``--cache-backend redis``), shared by every process and node.

Each answer is JSON, ``{"at": <time stored>, "answer": <the answer as sent>}``, under
``<prefix>resp:<user id>:<generation>:<hash>`` with its TTL; the user's generation
(``<prefix>gen:responses:<user id>``) is part of the name, so a provider-key write drops all of a
user's answers with one INCR (``RedisBroadcast``), in every process and node, and the old ones
expire unreachable. Redis's ``maxmemory`` and the TTLs bound them; ``FORGE_RESPONSES_MAX_BYTES``
caps one answer. One round trip per look-up and per store, counted; an outage makes every look-up
a miss and every store a no-op (``RedisLink``).
"""

from __future__ import annotations

import time

from .responses import Key

# The user's generation names the key: a write's INCR makes every older entry unreachable at once.
_GET = """
local g = redis.call('GET', KEYS[1]) or '0'
return redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])
"""
_SET = """
local g = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', ARGV[1] .. g .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
"""
_HEAD = b'{"at":'
_MID = b',"answer":'


class RedisAnswers:
    """Answers in Redis, shared by every process and node; Redis's TTL and maxmemory bound them."""

    def __init__(self, link, *, max_bytes: int) -> None:
        self.link = link
        self.max_bytes = max_bytes
        self._get = link.client.register_script(_GET)
        self._set = link.client.register_script(_SET)

    def _names(self, key: Key) -> tuple[list[str], str, str]:
        p = self.link.prefix
        return [f"{p}gen:responses:{key[0]}"], f"{p}resp:{key[0]}:", key[1].hex()

    async def get(self, key: Key, max_age: float) -> bytes | None:
        if not self.link.up:
            return None
        gen, prefix, digest = self._names(key)
        self.link.trip()
        try:
            raw = await self._get(keys=gen, args=[prefix, digest])
        except self.link.errors as exc:
            self.link.mark_down(exc)
            return None
        if raw is None:
            return None
        # JSON written by ``put``: {"at": <time>, "answer": <the answer as sent>}; sliced, not parsed.
        head, _, answer = raw.partition(_MID)
        if time.time() - float(head[len(_HEAD):]) > max_age:
            return None
        return answer[:-1]

    async def put(self, key: Key, answer: bytes, ttl: float) -> None:
        if not self.link.up or len(answer) > self.max_bytes:
            return
        gen, prefix, digest = self._names(key)
        value = _HEAD + repr(time.time()).encode() + _MID + answer + b"}"
        self.link.trip()
        try:
            await self._set(keys=gen, args=[prefix, digest, value, max(1, int(ttl * 1000))])
        except self.link.errors as exc:
            self.link.mark_down(exc)

    def drop_user(self, user_id: int) -> None:
        pass  # the writer's INCR (``RedisBroadcast``) did it for every process

    def clear(self) -> None:
        pass  # nothing held here
