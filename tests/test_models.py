"""``GET /v1/models`` behind the gateway: ``ModelLister`` with real caches, real adapters, a real
``ProviderService`` and the real ``CountedUpstream``; only the network is swapped, for a client
object implementing ``forge_ref.upstream.UpstreamClient`` whose providers answer from a table."""

from __future__ import annotations

import asyncio
import logging
import re

import orjson
import pytest
from cryptography.fernet import Fernet
from support import FakeClock

from forge_ref.adapters import AdapterRegistry
from forge_ref.cache import make_cache
from forge_ref.crypto import Crypto
from forge_ref.errors import UpstreamTimeout
from forge_ref.models import ModelLister, cache_key
from forge_ref.services import ProviderService
from forge_ref.store import ProviderRow
from forge_ref.tracing import Tracer
from forge_ref.upstream import CountedUpstream, UpstreamRequest, UpstreamResponse

TIMEOUT = 4.5


def model_list(*ids: str) -> UpstreamResponse:
    body = {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "x"} for i in ids]}
    return UpstreamResponse(200, {"content-type": "application/json"}, orjson.dumps(body))


class TableUpstream:
    """Providers by model-list URL: an ``UpstreamResponse`` to answer, or an exception to raise."""

    name = "table"

    def __init__(self, answers: dict[str, UpstreamResponse | Exception], *, delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.calls: list[tuple[str, str, float | None]] = []  # url, credential, timeout
        self.in_flight = self.max_in_flight = 0

    async def send(self, req: UpstreamRequest, *, timeout: float | None = None) -> UpstreamResponse:
        self.calls.append((req.url, req.headers.get("Authorization") or req.headers.get("x-api-key"), timeout))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            answer = self.answers[req.url]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.in_flight -= 1

    async def open_stream(self, req: UpstreamRequest):
        raise AssertionError("a model list is never streamed")

    def close(self) -> None:
        pass

    def urls(self) -> list[str]:
        return [url for url, _, _ in self.calls]


class World:
    def __init__(self, answers: dict, *, concurrency: int = 5, failure_ttl: float = 30.0, delay: float = 0.0) -> None:
        self.tracer = Tracer()
        self.clock = FakeClock()
        self.crypto = Crypto([Fernet.generate_key().decode()], self.tracer)
        self.upstream = TableUpstream(answers, delay=delay)
        adapters = AdapterRegistry(shared=True, upstream=CountedUpstream(self.upstream, self.tracer),
                                   make_upstream=lambda: pytest.fail("the adapters layer is on"), tracer=self.tracer)

        def cache(name: str, ttl: float):
            return make_cache(name, enabled=ttl > 0, maxsize=100, ttl=ttl, tracer=self.tracer, timer=self.clock)

        self.lister = ModelLister(cache("models", 3600.0), cache("models_failures", failure_ttl), adapters,
                                  timeout=TIMEOUT, concurrency=concurrency)

    def row(self, id_: int, provider: str, base_url: str, *, kind: str = "openai", mapping=None) -> ProviderRow:
        return ProviderRow(id_, provider, kind, self.crypto.encrypt(f"sk-{provider}-secret"), base_url,
                           mapping or {}, 0.0)

    def service(self, user_id: int, rows: list[ProviderRow]) -> ProviderService:
        return ProviderService(user_id, rows, self.crypto, lazy_keys=True)

    def list(self, service: ProviderService) -> list[str]:
        return [m["id"] for m in asyncio.run(self.lister.list(service))]

    def total(self, name: str) -> int:
        return self.tracer.total(name)


OPENAI = "https://api.openai.com/v1"
GROQ = "https://api.groq.com/openai/v1"
ANTHROPIC = "https://api.anthropic.com"


# --- the cache key --------------------------------------------------------------------------------


def test_cache_key_is_user_provider_and_a_hash_of_the_configuration():
    row = ProviderRow(1, "groq", "openai", "ciphertext", GROQ, {"fast": "llama", "big": "llama-70b"}, 1.0)
    key = cache_key(7, row)
    assert re.fullmatch(r"7:groq:[0-9a-f]{16}", key)
    # The same configuration, whatever the key, row id, time or mapping order: the same entry.
    same = ProviderRow(2, "groq", "openai", "other-ciphertext", GROQ, {"big": "llama-70b", "fast": "llama"}, 2.0)
    assert cache_key(7, same) == key
    # Any change of configuration: another entry, so an old list is never served for it.
    changed = [ProviderRow(1, "groq", "anthropic", "ciphertext", GROQ, row.model_mapping, 1.0),
               ProviderRow(1, "groq", "openai", "ciphertext", GROQ + "/", row.model_mapping, 1.0),
               ProviderRow(1, "groq", "openai", "ciphertext", GROQ, {"fast": "llama"}, 1.0)]
    assert len({key, *(cache_key(7, r) for r in changed)}) == 4
    assert cache_key(8, row) != key and cache_key(8, row).endswith(key.split(":", 1)[1])


# --- listing --------------------------------------------------------------------------------------


def test_every_provider_listed_as_provider_slash_model_then_its_aliases():
    w = World({OPENAI + "/models": model_list("gpt-4o", "gpt-4o-mini"),
               ANTHROPIC + "/v1/models?limit=1000": model_list("claude-sonnet-4-5")})
    service = w.service(7, [w.row(1, "claude", ANTHROPIC, kind="anthropic"),
                            w.row(2, "openai", OPENAI, mapping={"fast": "gpt-4o-mini"})])
    assert asyncio.run(w.lister.list(service)) == [
        {"id": "claude/claude-sonnet-4-5", "object": "model", "created": 0, "owned_by": "claude"},
        {"id": "openai/gpt-4o", "object": "model", "created": 0, "owned_by": "openai"},
        {"id": "openai/gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"},
        {"id": "fast", "object": "model", "created": 0, "owned_by": "openai"},
    ]
    # One call per provider, with that provider's own decrypted key and the model-list timeout.
    assert sorted(w.upstream.calls) == [(ANTHROPIC + "/v1/models?limit=1000", "sk-claude-secret", TIMEOUT),
                                        (OPENAI + "/models", "Bearer sk-openai-secret", TIMEOUT)]
    assert (w.total("upstream_model_list_requests"), w.total("upstream_requests")) == (2, 0)


def test_a_warm_list_costs_no_call_and_no_decryption():
    w = World({OPENAI + "/models": model_list("gpt-4o")})
    rows = [w.row(1, "openai", OPENAI)]
    w.list(w.service(7, rows))
    decryptions = w.total("decryptions")
    assert w.list(w.service(7, rows)) == ["openai/gpt-4o"]  # a rebuilt service, as after a service-cache miss
    assert len(w.upstream.calls) == 1 and w.total("decryptions") == decryptions == 1


def test_a_changed_configuration_is_never_served_the_old_list():
    w = World({OPENAI + "/models": model_list("gpt-4o"), GROQ + "/models": model_list("llama-3-8b")})
    assert w.list(w.service(7, [w.row(1, "fast", OPENAI)])) == ["fast/gpt-4o"]
    # Same provider name, new base URL, and no invalidation at all: still the right list.
    assert w.list(w.service(7, [w.row(1, "fast", GROQ)])) == ["fast/llama-3-8b"]
    assert w.upstream.urls() == [OPENAI + "/models", GROQ + "/models"]


# --- failures -------------------------------------------------------------------------------------

BROKEN = {
    "status 500": UpstreamResponse(500, {}, b'{"error": {"message": "boom"}}'),
    "redirect": UpstreamResponse(302, {"location": "https://elsewhere.example"}, model_list("stolen").body),
    "invalid JSON": UpstreamResponse(200, {}, b"<html>"),
    "timeout": UpstreamTimeout("upstream timed out"),
}


def test_failing_providers_are_left_out_and_logged_without_secrets(caplog):
    answers = {f"https://p{i}.example/v1/models": answer for i, answer in enumerate(BROKEN.values())}
    w = World(answers | {OPENAI + "/models": model_list("gpt-4o")})
    rows = [w.row(i, f"p{i}", f"https://p{i}.example/v1", mapping={f"alias{i}": "m"}) for i in range(len(BROKEN))]
    rows.append(w.row(9, "openai", OPENAI))
    with caplog.at_level(logging.WARNING, logger="forge_ref.models"):
        ids = w.list(w.service(7, rows))
    # The others answer; a failed provider's aliases stay (they are configuration, not upstream data).
    assert ids == ["alias0", "alias1", "alias2", "alias3", "openai/gpt-4o"]
    assert sorted(r.getMessage() for r in caplog.records) == [
        "model list of provider 'p0' (user 7) failed: upstream error 500: boom",
        "model list of provider 'p1' (user 7) failed: upstream error 302: no detail",
        "model list of provider 'p2' (user 7) failed: upstream returned invalid JSON for model list",
        "model list of provider 'p3' (user 7) failed: upstream timed out",
    ]
    assert w.total("upstream_model_list_requests") == 5


def test_a_failure_is_remembered_for_the_failure_ttl():
    w = World({GROQ + "/models": BROKEN["status 500"], OPENAI + "/models": model_list("gpt-4o")})
    service = w.service(7, [w.row(1, "groq", GROQ), w.row(2, "openai", OPENAI)])
    w.list(service)
    w.clock.now += 29.9
    assert w.list(service) == ["openai/gpt-4o"]
    assert w.upstream.urls() == [GROQ + "/models", OPENAI + "/models"]  # neither called again
    w.upstream.answers[GROQ + "/models"] = model_list("llama-3-8b")  # the provider is back
    w.clock.now += 0.2
    assert w.list(service) == ["groq/llama-3-8b", "openai/gpt-4o"]
    assert w.list(service) == ["groq/llama-3-8b", "openai/gpt-4o"]
    assert w.upstream.urls() == [GROQ + "/models", OPENAI + "/models", GROQ + "/models"]


def test_a_failure_ttl_of_zero_retries_every_time():
    w = World({GROQ + "/models": BROKEN["timeout"]}, failure_ttl=0)
    service = w.service(7, [w.row(1, "groq", GROQ)])
    for _ in range(3):
        assert w.list(service) == []
    assert len(w.upstream.calls) == 3


# --- concurrency ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("concurrency", "bound"), [(3, 3), (1, 1), (0, 1)])
def test_calls_in_flight_are_bounded(concurrency, bound):
    urls = [f"https://p{i}.example/v1" for i in range(7)]
    w = World({u + "/models": model_list("m") for u in urls}, concurrency=concurrency, delay=0.02)
    ids = w.list(w.service(7, [w.row(i, f"p{i}", u) for i, u in enumerate(urls)]))
    assert ids == [f"p{i}/m" for i in range(7)]
    assert (len(w.upstream.calls), w.upstream.max_in_flight) == (7, bound)


def test_concurrent_lists_share_one_call_per_provider():
    w = World({OPENAI + "/models": model_list("gpt-4o"), GROQ + "/models": model_list("llama")}, delay=0.02)
    rows = [w.row(1, "groq", GROQ), w.row(2, "openai", OPENAI)]

    async def both():
        return await asyncio.gather(w.lister.list(w.service(7, rows)), w.lister.list(w.service(7, rows)))

    first, second = asyncio.run(both())
    assert first == second and [m["id"] for m in first] == ["groq/llama", "openai/gpt-4o"]
    assert len(w.upstream.calls) == 2 and w.total("coalesced_waits") == 2


# --- invalidation ---------------------------------------------------------------------------------


def test_invalidate_user_drops_that_users_lists_and_failures_only():
    w = World({OPENAI + "/models": model_list("gpt-4o"), GROQ + "/models": BROKEN["status 500"]})
    one = w.service(1, [w.row(1, "openai", OPENAI), w.row(2, "groq", GROQ)])
    twelve = w.service(12, [w.row(3, "openai", OPENAI)])  # "1:" must not match "12:"
    w.list(one), w.list(twelve)
    assert len(w.upstream.calls) == 3
    assert w.lister.invalidate_user(1) == 1  # user 1's one cached list (its failure went too)
    w.list(twelve)
    assert len(w.upstream.calls) == 3
    w.list(one)
    assert w.upstream.urls()[3:] == [OPENAI + "/models", GROQ + "/models"]
