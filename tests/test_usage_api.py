"""``GET /v1/usage`` and ``GET /v1/admin/usage`` (``usage_api``) against usage rows written by real
requests through the real gateway, on both stores. Rows are still buffered (the flush interval is
an hour here) when the endpoint is asked: it flushes this process's rows first, so every number is
exact. The medians are checked against the rows as stored.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from datetime import datetime, timezone

import httpx
import pytest
from support import ADMIN, GatewayThread, add_provider, create_user, delta, settings_for

CHAT = {"messages": [{"role": "user", "content": "count these words"}]}
PG_KEY = "8vJ8L6b3zC7n2D0p4Qm1Xk9sT5yW3aR6uE0hF2gI4jM="


@pytest.fixture(params=["sqlite", "postgres"])
def gw(request, tmp_path):
    extra = {} if request.param == "sqlite" else {"db": request.getfixturevalue("pg_db"), "encryption_key": PG_KEY}
    g = GatewayThread(settings_for(tmp_path, **extra))
    yield g
    g.stop()


def stored_rows(g: GatewayThread) -> list[tuple]:
    return asyncio.run_coroutine_threadsafe(g.gw.store.driver.all(
        "SELECT user_id, provider, model, status, prompt_tokens, completion_tokens, latency_ms, created_at FROM usage"
        " ORDER BY id", ()), g.loop).result(5)


def traffic(g: GatewayThread, mock_url: str) -> dict:
    """Alice's and Bob's requests; what the clients saw of their usage, per (provider, model)."""
    alice, bob = create_user(g.url, "alice"), create_user(g.url, "bob")
    for key in (alice, bob):
        for provider, kind, path in (("openai", "openai", "/openai/v1"), ("claude", "anthropic", "/anthropic")):
            assert add_provider(g.url, key, provider=provider, kind=kind, api_key=f"sk-{provider}-0123456789",
                                base_url=mock_url + path).status_code == 201
    seen: dict = {}

    def note(group, status, prompt, completion):
        row = seen.setdefault(group, {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0})
        row["requests"] += 1
        row["errors"] += status >= 400
        row["prompt_tokens"] += prompt
        row["completion_tokens"] += completion

    with httpx.Client(base_url=g.url, headers={"Authorization": f"Bearer {alice}"}, timeout=10) as c:
        for model in ("openai/gpt-4o-mini", "openai/gpt-4o-mini", "openai/gpt-4o-mini", "claude/claude-haiku-4-5"):
            usage = c.post("/v1/chat/completions", json=dict(CHAT, model=model)).json()["usage"]
            note(tuple(model.split("/")), 200, usage["prompt_tokens"], usage["completion_tokens"])
        body = c.post("/v1/chat/completions", json=dict(CHAT, model="openai/gpt-4o-mini", stream=True,
                                                         stream_options={"include_usage": True})).content
        usage = json.loads(body.split(b"\n\n")[-3][6:])["usage"]  # the frame before [DONE]
        note(("openai", "gpt-4o-mini"), 200, usage["prompt_tokens"], usage["completion_tokens"])
        streamed = c.post("/v1/chat/completions", json=dict(CHAT, model="openai/gpt-4o-mini", stream=True))
        assert streamed.status_code == 200
        note(("openai", "gpt-4o-mini"), 200, 0, 0)  # the client asked for no usage: none to read
        assert c.post("/v1/chat/completions", json=dict(CHAT, model="openai/fail-500")).status_code == 502
        note(("openai", "fail-500"), 500, 0, 0)
        r = c.post("/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": "four words right here"})
        note(("openai", "text-embedding-3-small"), 200, r.json()["usage"]["prompt_tokens"], 0)
        assert c.post("/v1/chat/completions", json=dict(CHAT, model="ghost/x")).status_code == 404  # no row
    assert httpx.post(g.url + "/v1/chat/completions", json=dict(CHAT, model="openai/gpt-4o-mini"),
                      headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    return {"alice": alice, "bob": bob, "seen": seen}


def test_the_callers_usage_is_exact_and_includes_rows_still_buffered(gw, mock):
    t = traffic(gw, mock.url)
    assert len(gw.gw.usage) == 9  # nothing written yet: the flush interval is an hour
    h = {"Authorization": f"Bearer {t['alice']}"}
    before = gw.counters()
    r = httpx.get(gw.url + "/v1/usage", headers=h)
    assert r.status_code == 200
    d = delta(before, gw.counters())
    assert (d["db_writes"], d["db_queries"]) == (1, 1)  # the flush, then one statement
    rows = stored_rows(gw)
    alice_id = httpx.get(gw.url + "/v1/users/me", headers=h).json()["id"]
    expected = []
    for (provider, model), sums in sorted(t["seen"].items()):
        latencies = [row[6] for row in rows if row[0] == alice_id and row[1:3] == (provider, model)]
        expected.append({"provider": provider, "model": model, **sums,
                         "latency_p50_ms": round(statistics.median(latencies), 3)})
    assert r.json() == {"object": "list", "data": expected}  # the stream's tokens too, read from its last frame

    before = gw.counters()
    days = {datetime.fromtimestamp(row[7], timezone.utc).date().isoformat() for row in rows if row[0] == alice_id}
    r = httpx.get(gw.url + "/v1/usage?group_by=day", headers=h)
    assert [(row["day"], row["requests"]) for row in r.json()["data"]] == [
        (day, sum(1 for row in rows if row[0] == alice_id and
                  datetime.fromtimestamp(row[7], timezone.utc).date().isoformat() == day)) for day in sorted(days)]
    assert set(r.json()["data"][0]) == {"day", "requests", "errors", "prompt_tokens", "completion_tokens",
                                        "latency_p50_ms"}
    d = delta(before, gw.counters())
    assert (d.get("db_writes", 0), d["db_queries"]) == (0, 1)  # nothing left to flush

    iso = datetime.fromtimestamp(int(min(row[7] for row in rows)), timezone.utc).isoformat()  # the second before
    assert httpx.get(gw.url + "/v1/usage", params={"until": iso}, headers=h).json()["data"] == []  # exclusive
    after = httpx.get(gw.url + "/v1/usage", params={"since": iso, "group_by": "provider"}, headers=h).json()["data"]
    assert [(row["provider"], row["requests"], row["errors"]) for row in after] == [("claude", 1, 0), ("openai", 7, 1)]


def test_the_admin_sees_every_user_or_one(gw, mock):
    t = traffic(gw, mock.url)
    ids = {name: httpx.get(gw.url + "/v1/users/me", headers={"Authorization": f"Bearer {t[name]}"}).json()["id"]
           for name in ("alice", "bob")}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.get(gw.url + "/v1/admin/usage", params={"group_by": "user"}, headers=admin)
    assert [(row["user"], row["requests"], row["errors"]) for row in r.json()["data"]] == [
        (ids["alice"], 8, 1), (ids["bob"], 1, 0)]
    r = httpx.get(gw.url + "/v1/admin/usage", params={"user": ids["bob"]}, headers=admin)
    assert [(row["provider"], row["model"], row["requests"]) for row in r.json()["data"]] == [
        ("openai", "gpt-4o-mini", 1)]
    r = httpx.get(gw.url + "/v1/admin/usage", headers={"Authorization": f"Bearer {t['alice']}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"


@pytest.mark.parametrize(("query", "param", "message"), [
    ("since=yesterday", "since", "'since' must be an ISO 8601 date or time, such as 2025-01-31 or "
                                 "2025-01-31T12:00:00Z (UTC unless it names an offset)"),
    ("until=2025-13-01", "until", "'until' must be an ISO 8601 date or time, such as 2025-01-31 or "
                                  "2025-01-31T12:00:00Z (UTC unless it names an offset)"),
    ("since=2025-02-01&until=2025-01-01", "since", "'since' must be before 'until'"),
    ("since=2025-01-01&since=2025-02-01", "since", "'since' is given more than once"),
    ("group_by=provider,bogus", "group_by", "'group_by' is a comma-separated list of provider, model, day"),
    ("group_by=user", "group_by", "'group_by' is a comma-separated list of provider, model, day"),
    ("user=1", None, "unknown query parameter(s): user; known: group_by, since, until"),
])
def test_bad_parameters_are_a_clear_400(tmp_path, query, param, message):
    g = GatewayThread(settings_for(tmp_path))
    try:
        r = httpx.get(f"{g.url}/v1/usage?{query}", headers={"Authorization": f"Bearer {create_user(g.url)}"})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == param and r.json()["error"]["message"] == message
    finally:
        g.stop()
