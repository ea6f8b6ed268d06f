"""``Server-Timing`` end to end: absent unless on; hit or miss right for every layer combination the
exact-cost test covers; phases never sum to more than the total; streams timed to the first byte;
no user id and no secret in it. Real gateway on loopback, real mock."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from forge_ref.settings import LAYERS, layers_label
from support import GatewayThread, MockProcess, add_provider, create_user, settings_for

COMBOS = [dict(zip(LAYERS, bits)) for bits in itertools.product([False, True], repeat=len(LAYERS))]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PHASES = ("body", "parse", "user", "service", "key", "translate", "upstream", "respond")


def parse(header: str) -> dict[str, dict]:
    """``name;desc="x";dur=1.2, ...`` -> {name: {"desc": "x", "dur": 1.2}} (W3C Server-Timing syntax)."""
    out = {}
    for entry in header.split(", "):
        name, *params = entry.split(";")
        assert re.fullmatch(r"[a-z_]+", name), entry
        fields = {}
        for param in params:
            key, _, value = param.partition("=")
            assert key in ("desc", "dur"), entry  # nothing else: no user id, no request facts
            fields[key] = value.strip('"') if key == "desc" else float(value)
        out[name] = fields
    return out


def setup(gw: GatewayThread, mock_url: str) -> tuple[str, dict]:
    key = create_user(gw.url, "alice")
    for provider in ("openai", "groq"):
        assert add_provider(gw.url, key, provider=provider, api_key=f"sk-{provider}-secret-1234",
                            base_url=mock_url + "/openai/v1").status_code == 201
    return key, {"Authorization": f"Bearer {key}"}


def check_sums(timing: dict[str, dict]) -> None:
    phases = sum(timing[p]["dur"] for p in PHASES if p in timing)
    total = timing["total"]["dur"]
    assert phases <= total + 0.01, timing  # each entry is rounded to 1 us
    assert abs(timing["gateway"]["dur"] + timing.get("upstream", {}).get("dur", 0.0) - total) <= 0.002


def test_absent_unless_on(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path))
    try:
        _, h = setup(gw, mock.url)
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=h)
        assert r.status_code == 200 and "server-timing" not in r.headers
    finally:
        gw.stop()


@pytest.mark.parametrize("layers", COMBOS, ids=[layers_label(c) for c in COMBOS])
def test_hit_or_miss_for_every_combination(layers, mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, caches=layers_label(layers), server_timing=True))
    try:
        key, h = setup(gw, mock.url)
        with httpx.Client(base_url=gw.url, headers=h) as client:
            cold = parse(client.post("/v1/chat/completions", json=CHAT).headers["server-timing"])
            # Adding the provider keys looked the user up (warm if the layer is on) and dropped the service.
            assert cold["user"]["desc"] == ("hit" if layers["user"] else "miss")
            assert (cold["service"]["desc"], cold["key"]["desc"]) == ("miss", "miss")
            for _ in range(2):
                r = client.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 200
                header = r.headers["server-timing"]
                warm = parse(header)
                # The same facts the exact-cost test asserts as counts: a layer hit when it saved its cost.
                assert warm["user"]["desc"] == ("hit" if layers["user"] else "miss")
                assert warm["service"]["desc"] == ("hit" if layers["service"] else "miss")
                assert warm["key"]["desc"] == ("hit" if layers["service"] else "miss")  # 0 decryptions
                assert warm["adapter"]["desc"] == ("hit" if layers["adapters"] else "miss")
                assert list(warm)[:len(PHASES)] == list(PHASES)
                check_sums(warm)
                assert key not in header and "secret" not in header  # parse() allows names, desc and dur only
            client.get("/v1/models")
            models = parse(client.get("/v1/models").headers["server-timing"])
            assert models["models"]["desc"] == ("hit" if layers["models"] else "miss")
            check_sums(models)
    finally:
        gw.stop()


def test_a_stream_is_timed_to_its_first_byte(tmp_path):
    slow = MockProcess("--latency-ms", "80", "--chunks", "4", "--chunk-delay-ms", "100")
    gw = GatewayThread(settings_for(tmp_path, server_timing=True))
    try:
        _, h = setup(gw, slow.url)
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=dict(CHAT, stream=True), headers=h) as r:
            assert r.status_code == 200
            timing = parse(r.headers["server-timing"])
            body = b"".join(r.iter_bytes())
        assert body.endswith(b"data: [DONE]\n\n")
        assert 80 <= timing["upstream"]["dur"] < 300  # the latency before the first byte ...
        assert timing["total"]["dur"] < 300  # ... not the 400 ms of chunks that followed
        assert "respond" not in timing
        check_sums(timing)
    finally:
        gw.stop()
        slow.stop()


def test_errors_carry_it_too(mock, tmp_path):
    gw = GatewayThread(settings_for(tmp_path, server_timing=True))
    try:
        _, h = setup(gw, mock.url)
        r = httpx.post(gw.url + "/v1/chat/completions", json=dict(CHAT, model="nope/x"), headers=h)
        assert r.status_code == 404
        timing = parse(r.headers["server-timing"])
        assert timing["user"]["desc"] == "hit" and timing["service"]["desc"] == "miss" and "total" in timing
    finally:
        gw.stop()
