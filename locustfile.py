"""Locust load profiles for forge-ref (the runner is ``python -m benchmarks run``).

Flat on purpose: a few ``FastHttpUser`` classes and exactly one ``LoadTestShape`` (Locust
silently uses the first one it sees). The profiles are data, defined once in
``benchmarks.profiles`` (which user classes each runs, and the stages of its shape); the
requests' paths, models and bodies come from ``benchmarks.traffic``. The shape reads ``-u`` and
``-t`` (``use_common_options``) and scales the profile's stages to them.

Configuration (options, each also an environment variable; the runner sets them):

  --forge-profile   FORGE_PROFILE     a Locust profile of benchmarks.profiles (steady, mixed, churn, ...)
  --forge-keys-file FORGE_KEYS_FILE   keys file written by ``python -m benchmarks seed`` (or your own:
                                      {"tenants": [{"key": "forge-...", "providers": ["openai"]}, ...]})
  --forge-key       FORGE_KEY         instead of a keys file: one Forge key of your own gateway ...
  --forge-model     FORGE_MODEL       ... and the model its chats ask for (default openai/gpt-4o-mini)
  --forge-target    FORGE_TARGET      forge-ref | mock-direct | bare-proxy | litellm (paths, model names)
  --forge-static-key FORGE_STATIC_KEY one key for every request instead of the tenants' (LiteLLM)
  --forge-stale-bound FORGE_STALE_BOUND_S  seconds a write may take to reach every process (churn)
  --forge-churn-period FORGE_CHURN_PERIOD_S  seconds between two churn writes per churn user
  --forge-zipf-s    FORGE_ZIPF_S      Zipf exponent of tenant popularity (many-tenants)
  --forge-hosts     FORGE_HOSTS       comma-separated base URLs of several nodes: user i sends to node
                                      i mod N (default: --host alone)
  --forge-timing-prefix FORGE_TIMING_PREFIX  record every response's Server-Timing header
                                      (``benchmarks.server_timing``) into <prefix><pid>.json at exit
  --forge-think-s   FORGE_THINK_S     realistic-chat's think time between turns, LOW-HIGH seconds (default 1-3)

Custom measurements go through ``events.request`` with their own request types, which the
runner keeps apart from HTTP totals: ``TTFT ttft`` (time to first token of a stream, ms),
``ICD inter_chunk`` (a stream's mean gap between chunks after the first, ms; its response length
is the stream's chunk count) and ``CHECK stale_response`` / ``CHECK fresh_response`` (churn: a
response that did / did not reflect a write that had completed more than the stale bound earlier).

Example (against a running gateway)::

    FORGE_KEYS_FILE=keys.json FORGE_PROFILE=mixed locust -f locustfile.py --headless \\
        -u 20 -r 20 -t 10s --host http://127.0.0.1:8000 --only-summary
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import re
import time
import urllib.request

import gevent
import gevent.event
import gevent.pool
from locust import FastHttpUser, LoadTestShape, constant, events, task

from benchmarks.profiles import BURST_COPIES, REPEATED_PROMPTS
from benchmarks.profiles import LOAD_PROFILES as PROFILES
from benchmarks.server_timing import Recorder
from benchmarks.targets import ADMIN
from benchmarks.traffic import CHAT_MODELS, TARGETS, chat_body, embeddings_body, tool_turns

# --- data -------------------------------------------------------------------------------------

FIRST_TOKEN = re.compile(rb'"content":\s*"[^"]')  # a delta that carries text, not the empty role frame
CHURN_TENANTS = 4  # the last tenants of the keys file: written to by churn users only, never read by others


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--forge-profile", env_var="FORGE_PROFILE", default="steady", choices=sorted(PROFILES))
    parser.add_argument("--forge-keys-file", env_var="FORGE_KEYS_FILE", default="keys.json")
    parser.add_argument("--forge-key", env_var="FORGE_KEY", default="")
    parser.add_argument("--forge-model", env_var="FORGE_MODEL", default="openai/gpt-4o-mini")
    parser.add_argument("--forge-target", env_var="FORGE_TARGET", default="forge-ref", choices=sorted(TARGETS))
    parser.add_argument("--forge-static-key", env_var="FORGE_STATIC_KEY", default="")
    parser.add_argument("--forge-stale-bound", env_var="FORGE_STALE_BOUND_S", type=float, default=0.0)
    parser.add_argument("--forge-churn-period", env_var="FORGE_CHURN_PERIOD_S", type=float, default=0.25)
    parser.add_argument("--forge-zipf-s", env_var="FORGE_ZIPF_S", type=float, default=1.1)
    parser.add_argument("--forge-hosts", env_var="FORGE_HOSTS", default="")
    parser.add_argument("--forge-timing-prefix", env_var="FORGE_TIMING_PREFIX", default="")
    parser.add_argument("--forge-think-s", env_var="FORGE_THINK_S", default="1-3")


# --- Server-Timing: where the gateway's time goes ---------------------------------------------


@events.init.add_listener
def _record_server_timing(environment, **_kw) -> None:
    prefix = environment.parsed_options.forge_timing_prefix if environment.parsed_options else ""
    if not prefix:
        return
    recorder = Recorder()

    def on_request(request_type, name, response_time, response=None, **_kw) -> None:
        header = response.headers.get("Server-Timing") if response is not None else None
        if header:
            recorder.add(name, header, response_time)

    events.request.add_listener(on_request)
    events.quitting.add_listener(lambda **_: recorder.write(f"{prefix}{os.getpid()}.json"))


# --- tenants ----------------------------------------------------------------------------------


class Tenants:
    """The seeded tenants, their current keys, and how requests pick them (uniform or Zipf)."""

    def __init__(self, opts) -> None:
        self.opts = opts
        self.target = TARGETS[opts.forge_target]
        if opts.forge_key:  # one key of your own gateway, one model: the "custom" provider below
            doc = {"tenants": [{"id": 1, "key": opts.forge_key, "providers": ["custom"]}]}
        else:
            with open(opts.forge_keys_file) as f:
                doc = json.load(f)
        self.mock_url = doc.get("mock_url", "")
        tenants = doc["tenants"]
        if opts.forge_static_key:
            for t in tenants:
                t["key"] = opts.forge_static_key
        for t in tenants:
            self._headers(t)
        churn = opts.forge_profile == "churn" and len(tenants) > CHURN_TENANTS
        self.readers = tenants[:-CHURN_TENANTS] if churn else tenants
        self.writers = itertools.cycle(tenants[-CHURN_TENANTS:] if churn else tenants)
        self.cum = None
        if opts.forge_profile == "many-tenants":
            # Popularity by rank r (1-based) is 1/r^s; the shuffled order keeps hot tenants apart in the DB.
            order = list(self.readers)
            random.Random(7).shuffle(order)
            self.readers, total, cum = order, 0.0, []
            for r in range(1, len(order) + 1):
                total += 1.0 / r ** opts.forge_zipf_s
                cum.append(total)
            self.cum = cum
        routed = self.target["routed"]
        if opts.forge_key:  # every chat of every user class asks for the one model given
            self.chat = dict.fromkeys((*CHAT_MODELS, "custom"), chat_body(model=opts.forge_model))
        else:
            self.chat = {kind: chat_body(kind, routed=routed) for kind in CHAT_MODELS}
        self.stream = {k: v[:-1] + b', "stream": true}' for k, v in self.chat.items()}
        self.embeddings = embeddings_body(routed=routed)
        self.tool_turns = tool_turns(routed=routed)
        self.prefix = self.target["prefix"]

    @staticmethod
    def _headers(t: dict) -> None:
        t["headers"] = {"Authorization": "Bearer " + t["key"], "Content-Type": "application/json"}

    def set_key(self, t: dict, key: str) -> None:
        t["key"] = key
        self._headers(t)

    def pick(self) -> dict:
        if self.cum is not None:
            return random.choices(self.readers, cum_weights=self.cum)[0]
        return random.choice(self.readers)


_tenants: Tenants | None = None


def tenants(environment) -> Tenants:
    global _tenants
    if _tenants is None:
        _tenants = Tenants(environment.parsed_options)
    return _tenants


class Stale(Exception):
    """A response that did not reflect a write completed more than the stale bound earlier."""


# --- users ------------------------------------------------------------------------------------


class ForgeUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop: every user sends its next request as soon as one returns
    network_timeout = 30.0
    connection_timeout = 10.0

    _node_seq = itertools.count()  # user number across classes: which node a user sends to

    def on_start(self) -> None:
        self.t = tenants(self.environment)
        hosts = [h.strip().rstrip("/") for h in self.environment.parsed_options.forge_hosts.split(",") if h.strip()]
        if hosts:  # several nodes: each user keeps one (its own keep-alive connections), round-robin
            self.client.base_url = hosts[next(ForgeUser._node_seq) % len(hosts)]

    def chat(self, tenant: dict | None = None, kind: str = "openai", name: str = "/v1/chat/completions") -> None:
        tenant = tenant or self.t.pick()
        self.client.post(self.t.prefix + "/v1/chat/completions", data=self.t.chat[kind], headers=tenant["headers"],
                         name=name)

    def chat_any(self) -> None:
        tenant = self.t.pick()
        self.chat(tenant, random.choice(tenant["providers"]))

    def stream(self) -> None:
        tenant = self.t.pick()
        kind = random.choice(tenant["providers"])
        started = time.perf_counter()
        first = last = None
        chunks = 0
        with self.client.post(self.t.prefix + "/v1/chat/completions", data=self.t.stream[kind],
                              headers=tenant["headers"], name="/v1/chat/completions (stream)", stream=True,
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            # One SSE frame at a time as it arrives (iter_content's read(n) waits for n bytes).
            raw, done = resp._response, False
            while not done:
                frame = raw.readline(b"\n\n")
                if not frame:
                    break
                done = frame.startswith(b"data: [DONE]")
                if not done and FIRST_TOKEN.search(frame):
                    last = time.perf_counter()
                    chunks += 1
                if first is None and (done or last is not None):
                    first = last or time.perf_counter()
            # The request's time is the whole stream; time to first token is its own metric.
            resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            if not done:
                resp.failure("stream ended without [DONE]")
                return
        if first is not None:
            events.request.fire(request_type="TTFT", name="ttft", response_time=(first - started) * 1000,
                                response_length=0, exception=None, context={})
        if chunks > 1:  # the pace of the stream after its first token: one event per stream, not per chunk
            gap = (last - first) * 1000 / (chunks - 1)
            events.request.fire(request_type="ICD", name="inter_chunk", response_time=gap, response_length=chunks,
                                exception=None, context={})

    def models(self) -> None:
        tenant = self.t.pick()
        self.client.get(self.t.prefix + "/v1/models", headers=tenant["headers"], name="/v1/models")

    def embeddings(self) -> None:
        tenant = self.t.pick()
        self.client.post(self.t.prefix + "/v1/embeddings", data=self.t.embeddings, headers=tenant["headers"],
                         name="/v1/embeddings")


class SteadyUser(ForgeUser):
    """Non-streaming chat over a few tenants: the hot path alone."""

    @task
    def chat_task(self) -> None:
        self.chat()


class MixedUser(ForgeUser):
    """What an application sends: chat on every provider, streams, model lists, embeddings."""

    @task(6)
    def chat_task(self) -> None:
        self.chat_any()

    @task(2)
    def stream_task(self) -> None:
        self.stream()

    @task(1)
    def models_task(self) -> None:
        self.models()

    @task(1)
    def embeddings_task(self) -> None:
        self.embeddings()


class ManyTenantsUser(ForgeUser):
    """Zipf-popular tenants out of tens of thousands: hit ratios and memory against cache bounds."""

    @task(9)
    def chat_task(self) -> None:
        self.chat_any()

    @task(1)
    def models_task(self) -> None:
        self.models()


class ModelsHeavyUser(ForgeUser):
    """A chat UI: list the models before every prompt."""

    @task
    def models_then_chat(self) -> None:
        tenant = self.t.pick()
        self.client.get(self.t.prefix + "/v1/models", headers=tenant["headers"], name="/v1/models")
        self.chat(tenant, random.choice(tenant["providers"]))


class EmbeddingsBurstUser(ForgeUser):
    """An application embedding a document: a burst of concurrent embeddings requests of one tenant,
    one chunk each, and the next burst when all are answered (what embeddings batching merges)."""

    burst = 8
    concurrency = burst  # FastHttpUser: the requests one user may have in flight at once

    def on_start(self) -> None:
        super().on_start()
        self.bodies = [embeddings_body(routed=self.t.target["routed"], text=f"chunk {i} of the benchmark document")
                       for i in range(self.burst)]

    @task
    def burst_task(self) -> None:
        tenant = self.t.pick()
        group = gevent.pool.Group()
        for body in self.bodies:
            group.spawn(self.client.post, self.t.prefix + "/v1/embeddings", data=body, headers=tenant["headers"],
                        name="/v1/embeddings")
        group.join()


class ColdBurstUser(ForgeUser):
    """One first request per user, all users at once against cold caches (coalescing).

    Spawning is never instantaneous, so users wait at a gate that opens when the last one has
    started: the requests then leave together.
    """

    _seq = itertools.count()
    _gate = gevent.event.Event()

    def on_start(self) -> None:
        super().on_start()
        self.n = next(ColdBurstUser._seq)
        self.done = False
        if self.n + 1 >= (self.environment.parsed_options.num_users or 1):
            ColdBurstUser._gate.set()

    def wait_time(self) -> float:
        return 3600.0 if self.done else 0.0

    @task
    def first_request(self) -> None:
        if self.done:
            return
        self.done = True
        ColdBurstUser._gate.wait(timeout=10)
        tenant = self.t.readers[self.n % len(self.t.readers)]
        if self.n % 2 == 0:
            self.client.get(self.t.prefix + "/v1/models", headers=tenant["headers"], name="/v1/models")
        else:
            self.chat(tenant)


class ChurnUser(ForgeUser):
    """A small rate of writes on its own tenants, each checked: does the next read reflect it?

    Cycle per tenant: api_key -> a value the mock rejects (a chat must now fail), back to a valid
    one (must succeed), base_url -> a path the mock does not serve (must fail), back (must
    succeed), then a Forge key reset (the old key must get 401, the new one 200). A read that
    contradicts a write completed more than ``--forge-stale-bound`` seconds earlier is a stale
    response.
    """

    fixed_count = 1

    def on_start(self) -> None:
        super().on_start()
        self.tenant = next(self.t.writers)
        self.step = 0
        self.version = 0
        self.good_url = self.t.mock_url + "/openai/v1"
        self.bad_url = self.t.mock_url + "/gone/v1"

    def wait_time(self) -> float:
        return self.environment.parsed_options.forge_churn_period

    def _check(self, ok: bool, what: str) -> None:
        name = "fresh_response" if ok else "stale_response"
        events.request.fire(request_type="CHECK", name=name, response_time=0, response_length=0,
                            exception=None if ok else Stale(what), context={})

    def _write(self, method: str, path: str, body: dict | None, name: str) -> dict | None:
        data = json.dumps(body).encode() if body is not None else None
        with self.client.request(method, path, data=data, headers=self.tenant["headers"], name=name,
                                 catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return None
            return resp.json()

    def _verify_chat(self, headers: dict, expect_ok: bool, what: str) -> None:
        gevent.sleep(self.environment.parsed_options.forge_stale_bound)
        with self.client.post("/v1/chat/completions", data=self.t.chat["openai"], headers=headers,
                              name="[verify] /v1/chat/completions", catch_response=True) as resp:
            ok = (resp.status_code == 200) == expect_ok
            resp.success()  # an expected refusal is not a failure; staleness is counted by _check
        self._check(ok, what)

    @task
    def churn(self) -> None:
        step, self.step = self.step % 5, self.step + 1
        pk = "/v1/provider-keys/openai"
        if step == 0:
            self.version += 1
            if self._write("PUT", pk, {"api_key": f"sk-invalid-{self.version}"}, "/v1/provider-keys/[provider]"):
                self._verify_chat(self.tenant["headers"], False, "chat succeeded with a revoked provider key")
        elif step == 1:
            if self._write("PUT", pk, {"api_key": f"sk-bench-openai-{self.version}"}, "/v1/provider-keys/[provider]"):
                self._verify_chat(self.tenant["headers"], True, "chat failed after the provider key was fixed")
        elif step == 2:
            if self._write("PUT", pk, {"base_url": self.bad_url}, "/v1/provider-keys/[provider]"):
                self._verify_chat(self.tenant["headers"], False, "chat reached the old base_url")
        elif step == 3:
            if self._write("PUT", pk, {"base_url": self.good_url}, "/v1/provider-keys/[provider]"):
                self._verify_chat(self.tenant["headers"], True, "chat failed after the base_url was restored")
        else:
            old = self.tenant["headers"]
            out = self._write("POST", "/v1/users/me/reset-key", None, "/v1/users/me/reset-key")
            if out and out.get("api_key"):
                self.t.set_key(self.tenant, out["api_key"])
                self._verify_chat(old, False, "the old Forge key still worked after a reset")
                self._verify_chat(self.tenant["headers"], True, "the new Forge key was refused")
            self.tenant = next(self.t.writers)

def _think(environment) -> tuple[float, float]:
    low, _, high = environment.parsed_options.forge_think_s.partition("-")
    return float(low), float(high or low)


class RealisticChatUser(ForgeUser):
    """A person in a chat application: mostly streamed answers, the model list now and then, and
    think time between turns (``--forge-think-s``), so most users are idle at any moment."""

    def wait_time(self) -> float:
        return random.uniform(*_think(self.environment))

    @task(8)
    def stream_task(self) -> None:
        self.stream()

    @task(1)
    def chat_task(self) -> None:
        self.chat()

    @task(1)
    def models_task(self) -> None:
        self.models()


class AgentLoopUser(ForgeUser):
    """An agent on one key of its own: short tool-calling turns back to back (the question with the
    tools, answered by a tool call; then the tool's result, answered by text), no think time."""

    def on_start(self) -> None:
        super().on_start()
        self.tenant = self.t.pick()

    @task
    def step(self) -> None:
        for body in self.t.tool_turns:
            self.client.post(self.t.prefix + "/v1/chat/completions", data=body, headers=self.tenant["headers"],
                             name="/v1/chat/completions (tool turn)")


class LongStreamUser(ForgeUser):
    """One stream open at all times: the next starts as soon as one ends (``long-streams`` starts
    every user at once, so ``-u`` is the number of concurrent streams)."""

    network_timeout = 120.0  # a stream of the timing model lasts seconds; under load, longer

    @task
    def stream_task(self) -> None:
        self.stream()


# --- the design's future work: duplicates and short-ttl ----------------------------------------

CACHE_CONTROL = "max-age=600"  # duplicates: every chat opts in to the response cache, longer than any run
# Request-name tags: which requests are duplicate traffic (benchmarks.future_report counts them).
REPEAT, UNIQUE, BURST_FIRST, BURST_COPY = "[repeat]", "[unique]", "[burst first]", "[burst copy]"


class DuplicatesUser(ForgeUser):
    """Chats that all opt in to the response cache (``Cache-Control: max-age``), streaming and not: some
    repeat a small set of prompts, some are bursts of identical copies of a fresh prompt sent at once
    (in-flight dedup), the rest are unique."""

    concurrency = BURST_COPIES
    _fresh = itertools.count()

    def on_start(self) -> None:
        super().on_start()
        routed = self.t.target["routed"]
        self.repeated = [chat_body(routed=routed, text=f"repeated prompt {i}") for i in range(REPEATED_PROMPTS)]

    def _fresh_body(self) -> bytes:
        return chat_body(routed=self.t.target["routed"], text=f"fresh prompt {os.getpid()}-{next(self._fresh)}")

    def _send(self, tenant: dict, body: bytes, stream: bool, tag: str) -> None:
        name = "/v1/chat/completions" + (" (stream)" if stream else "") + f" {tag}"
        if stream:
            body = body[:-1] + b', "stream": true}'
        started = time.perf_counter()
        with self.client.post(self.t.prefix + "/v1/chat/completions", data=body, name=name, stream=stream,
                              headers={**tenant["headers"], "Cache-Control": CACHE_CONTROL},
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            if stream:  # the whole stream is the request's time, as in ForgeUser.stream
                raw, done = resp._response, False
                while not done:
                    frame = raw.readline(b"\n\n")
                    if not frame:
                        break
                    done = frame.startswith(b"data: [DONE]")
                resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                if not done:
                    resp.failure("stream ended without [DONE]")

    @task(3)
    def repeat_task(self) -> None:
        self._send(self.t.pick(), random.choice(self.repeated), random.random() < 0.4, REPEAT)

    @task(3)
    def unique_task(self) -> None:
        self._send(self.t.pick(), self._fresh_body(), random.random() < 0.4, UNIQUE)

    @task(1)
    def burst_task(self) -> None:
        tenant, body = self.t.pick(), self._fresh_body()
        group = gevent.pool.Group()
        for i in range(BURST_COPIES):  # half of them streaming: a stream and a whole answer share one call
            group.spawn(self._send, tenant, body, i % 2 == 1, BURST_FIRST if i == 0 else BURST_COPY)
        group.join()


class ShortTtlUser(ForgeUser):
    """Chats and model lists over a few hot tenants whose cache entries live a few seconds (short-ttl)."""

    @task(4)
    def chat_task(self) -> None:
        self.chat()

    @task(1)
    def models_task(self) -> None:
        self.models()


TURNOVER_LAYERS = ("user", "service", "models")
TURNOVER_POLL_S = 0.05


class Turnover:
    """short-ttl: when the user, service and models caches turned hot entries over (a synchronous reload,
    counted as a miss, or a background refresh), from ``/_stats`` polled every 50 ms, and the latency of
    the requests in flight at those moments (``near``) against all the others (``away``)."""

    def __init__(self, base: str, token: str, clock=time.time) -> None:
        self.clock = clock  # wall-clock time: the polls and the requests' ends share it
        self.request = urllib.request.Request(base.rstrip("/") + "/_stats",
                                              headers={"Authorization": f"Bearer {token}"})
        self.samples: list[tuple[float, int]] = []  # (time, misses + refreshes so far)
        self.requests: list[tuple[float, float, float]] = []  # (start, end, latency ms)

    def poll(self) -> None:
        while True:
            try:
                with urllib.request.urlopen(self.request, timeout=2) as resp:
                    caches = json.load(resp)["caches"]
                self.samples.append((self.clock(), sum(caches[layer]["misses"] + caches[layer]["refreshes"]
                                                      for layer in TURNOVER_LAYERS)))
            except (OSError, ValueError, KeyError):
                pass  # a lost sample widens one interval; it does not invent a turnover
            gevent.sleep(TURNOVER_POLL_S)

    def on_request(self, request_type, name, response_time, **_kw) -> None:
        if request_type in ("TTFT", "CHECK"):
            return
        end = self.clock()
        self.requests.append((end - response_time / 1000, end, response_time))

    def split(self) -> tuple[list[float], list[float]]:
        """(latencies of requests overlapping a poll interval in which entries turned over, the others),
        counting only requests within the polled span."""
        if len(self.samples) < 2:
            return [], []
        moved = [(t0, t1) for (t0, n0), (t1, n1) in zip(self.samples, self.samples[1:]) if n1 > n0]
        ends = [t1 for _, t1 in moved]
        first, last = self.samples[0][0], self.samples[-1][0]
        near, away = [], []
        for start, end, ms in self.requests:
            if start < first or end > last:
                continue
            i = bisect.bisect_left(ends, start)  # the first interval ending after the request started
            (near if i < len(moved) and moved[i][0] <= end else away).append(ms)
        return near, away

    def write(self, path: str) -> None:
        recorder = Recorder()
        near, away = self.split()
        for key, values in (("* turnover:near", near), ("* turnover:away", away)):
            for ms in values:
                recorder.add_latency(key, ms)
        recorder.write(path)


@events.init.add_listener
def _record_turnover(environment, **_kw) -> None:
    opts = environment.parsed_options
    if not opts or not opts.forge_timing_prefix or opts.forge_profile != "short-ttl":
        return
    turnover = Turnover(environment.host or "", ADMIN)
    events.request.add_listener(turnover.on_request)
    events.test_start.add_listener(lambda **_: gevent.spawn(turnover.poll))
    events.quitting.add_listener(lambda **_: turnover.write(f"{opts.forge_timing_prefix}turnover.{os.getpid()}.json"))


# Each profile's user classes, named in benchmarks.profiles (an unknown name fails here, at import).
CLASSES = {name: [globals()[cls] for cls in p.user_classes] for name, p in PROFILES.items()}


class ProfileShape(LoadTestShape):
    """The one shape: the stages of ``--forge-profile``, scaled to ``-u`` users and ``-t`` seconds."""

    use_common_options = True

    def tick(self):
        opts = self.runner.environment.parsed_options
        run_time = opts.run_time or 60
        users = opts.num_users or 1
        t = self.get_run_time()
        for until, fraction, rate in PROFILES[opts.forge_profile].stages:
            if t < until * run_time:
                n = max(1, round(fraction * users))
                spawn = max(1000, n) if rate == "all" else (rate or opts.spawn_rate or n)
                return n, spawn, CLASSES[opts.forge_profile]
        return None
