"""The load profiles, in one table, and the cache-configuration matrix.

A profile is everything both sides need to know: how many tenants the runner seeds and with
which provider keys, how it warms up, any fixed load size, and for Locust the user classes
(by name: they are defined in ``locustfile.py``) and the stages of the load shape. The
locustfile imports this table (Locust runs it from the repository root, where ``benchmarks``
is importable); the runner never imports the locustfile, because importing Locust
monkey-patches the whole process (gevent). A new profile is one row here, plus its user
class in the locustfile if none of the existing ones fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from forge_ref.settings import LAYERS, parse_layers

# A stage: (until this fraction of -t, this fraction of -u users, spawn rate: None = -r, "all" =
# every user at once).
Stage = tuple[float, float, float | str | None]
STEADY: tuple[Stage, ...] = ((1.0, 1.0, None),)


@dataclass(frozen=True)
class Profile:
    name: str
    tenants: int
    providers: str | None = None  # seed pattern: None = 1-3 keys per user (see seed.py), else a fixed list
    warmup: str = "touch"  # touch: one request of each kind per tenant; locust: run the profile; none
    users: int | None = None  # fixed Locust users (cold-burst), else --users
    duration: float | None = None  # fixed measured seconds, else --duration
    probe: bool = False  # measured by the runner's concurrency-1 probe, not Locust
    quick_tenants: int | None = None
    user_classes: tuple[str, ...] = ()  # locustfile user classes, by name
    stages: tuple[Stage, ...] = STEADY
    streams: bool = False  # mostly streamed answers: with the mock's timing model, each lasts seconds


PROFILES = {p.name: p for p in (
    # Three keys each, chat on openai only: with the keys layer off every build decrypts all three.
    Profile("steady", tenants=10, providers="openai,anthropic,gemini", user_classes=("SteadyUser",)),
    Profile("mixed", tenants=50, user_classes=("MixedUser",)),
    # the last 4 tenants are written to by the churn user (locustfile CHURN_TENANTS)
    Profile("churn", tenants=54, user_classes=("MixedUser", "ChurnUser")),
    Profile("many-tenants", tenants=100_000, warmup="locust", quick_tenants=10_000, user_classes=("ManyTenantsUser",)),
    Profile("cold-burst", tenants=5, warmup="none", users=200, duration=4.0, user_classes=("ColdBurstUser",),
            stages=((1.0, 1.0, "all"),)),
    Profile("models-heavy", tenants=50, user_classes=("ModelsHeavyUser",)),
    Profile("embeddings-burst", tenants=1, providers="openai", user_classes=("EmbeddingsBurstUser",)),
    # The design's future work (see the section at the end of this module).
    Profile("duplicates", tenants=10, providers="openai", warmup="locust", user_classes=("DuplicatesUser",)),
    Profile("short-ttl", tenants=10, providers="openai", user_classes=("ShortTtlUser",)),
    Profile("cache-hit-c1", tenants=1, providers="openai", probe=True),  # benchmarks.hit_probe
    Profile("latency-c1", tenants=1, providers="openai", probe=True),
    # The production-like profiles (``python -m benchmarks production``): openai-kind models only, so the
    # same traffic also runs against mock-direct and LiteLLM. Their timing comes from the mock's model.
    # A chat application: mostly streamed answers, a model list now and then, think time between turns. Few
    # tenants, many users each: every tenant's provider key lists models often enough to meet a rate limit.
    Profile("realistic-chat", tenants=10, providers="openai", user_classes=("RealisticChatUser",), streams=True),
    # An agent: short tool-calling turns back to back, each user on one key of its own.
    Profile("agent-loop", tenants=20, providers="openai", user_classes=("AgentLoopUser",)),
    # Thousands of streams held open at once: every user reopens one as soon as it ends; all start together.
    Profile("long-streams", tenants=10, providers="openai", user_classes=("LongStreamUser",),
            stages=((1.0, 1.0, "all"),), streams=True),
)}
# The profiles Locust runs (the others are measured by the runner's own probe).
LOAD_PROFILES = {name: p for name, p in PROFILES.items() if not p.probe}
# Measured by ``python -m benchmarks production`` against a slow mock; ``run`` takes them by name only.
PRODUCTION_PROFILES = ("realistic-chat", "agent-loop", "long-streams")
# The full matrix's profiles (``run`` without --profiles).
MATRIX_PROFILES = {name: p for name, p in LOAD_PROFILES.items() if name not in PRODUCTION_PROFILES}


def all_but(layer: str) -> str:
    return ",".join(x for x in LAYERS if x != layer)


FULL_CONFIGS = ["none", *LAYERS, *(all_but(layer) for layer in LAYERS), "all"]
QUICK_CONFIGS = ["none", "all", "user,service,keys"]

# --quick: a small plan that still answers every claim once (profile -> configs).
QUICK_PLAN = {
    "steady": QUICK_CONFIGS,
    "mixed": ["none", "all"],
    "models-heavy": ["none", "all"],
    "churn": ["all"],
    "cold-burst": ["all"],
}
# --quick also runs these (profile, config) once on PostgreSQL + Redis (the default --stores/--backends only).
QUICK_BACKEND_JOBS = [("steady", "all")]
# --quick also runs this (profile, config, variant, server environment) once: what the trace costs,
# the same job with Server-Timing (on in every other job) off.
QUICK_TIMING_JOB = ("steady", "all", "timing=off", {"FORGE_SERVER_TIMING": "0"})


def variants(profile: str, config: str, tenants: int) -> list[tuple[str, dict[str, str]]]:
    """(variant label, extra server environment) runs of one profile and configuration."""
    own = future_variants(profile, config)
    if own is not None:
        return own
    on = parse_layers(config)
    if profile == "cold-burst" and (on["user"] or on["service"] or on["models"]):
        return [("coalesce=1", {"FORGE_COALESCE": "1"}), ("coalesce=0", {"FORGE_COALESCE": "0"})]
    if profile == "embeddings-burst" and config == "all":
        # What batching costs in latency against the upstream calls it saves: off, and a 5 ms window.
        return [("batch=off", {"FORGE_EMBEDDINGS_BATCH_WINDOW_MS": "0"}),
                ("batch=5ms", {"FORGE_EMBEDDINGS_BATCH_WINDOW_MS": "5"})]
    if profile == "many-tenants" and (on["user"] or on["service"]):
        # Well below the working set of a run (about 5% of 100k Zipf tenants in 15 s), so evictions show.
        bound = str(max(50, tenants // 100))
        return [("", {}), ("bounded", {"FORGE_USER_MAX": bound, "FORGE_SERVICE_MAX": bound, "FORGE_MODELS_MAX": bound})]
    return [("", {})]


# --- the design's future work, measured (issue 13) ----------------------------------------------
#
# ``duplicates``: part of the chat traffic repeats a small set of prompts, part of it is concurrent
# copies of one fresh prompt, the rest is unique; every request opts in with Cache-Control max-age.
# ``short-ttl``: TTLs of a few seconds, so hot entries expire (or are refreshed) during the window.
# ``cache-hit-c1``: what a response-cache hit costs, at concurrency 1 (``hit_probe``).
# ``embeddings-burst`` (above) measures batching. ``FUTURE_PLAN`` runs the three in one command.

REPEATED_PROMPTS = 8  # duplicates: the small set of prompts (per tenant) that part of the traffic repeats
BURST_COPIES = 4  # identical requests of one fresh prompt sent at once: one leads, the others are duplicates
DUPLICATES_MAX_BYTES = 1 << 20  # far below what the unique answers of a run need: the bound and its evictions show
# Longer than the gap between the warm-up and Locust's first request (a few seconds on a loaded machine):
# an entry that expires unread before the window is not a hot entry, whatever refresh-ahead does.
SHORT_TTLS = {"FORGE_USER_TTL": "5", "FORGE_SERVICE_TTL": "6", "FORGE_MODELS_TTL": "8"}
REFRESH_AHEAD = "0.8"
# The configurations a profile runs with when --configs is not given (the others: the full matrix).
PROFILE_CONFIGS = {"duplicates": ["all", all_but("responses")], "short-ttl": ["all"], "cache-hit-c1": ["all"]}
# ``python -m benchmarks run --plan future-work``: profile -> (configurations, store, round trip to it in ms).
# short-ttl runs on PostgreSQL a 2 ms round trip away: on local SQLite a reload never suspends the
# request, so expiry would cost microseconds and refresh-ahead would have nothing to hide.
FUTURE_PLAN = {
    "duplicates": (PROFILE_CONFIGS["duplicates"], "sqlite", 0.0),
    "cache-hit-c1": (["all"], "sqlite", 0.0),
    "short-ttl": (PROFILE_CONFIGS["short-ttl"], "postgres", 2.0),
    "embeddings-burst": (["all"], "sqlite", 0.0),
}


def future_variants(profile: str, config: str) -> list[tuple[str, dict[str, str]]] | None:
    """The runs of the future-work profiles (None: not one of them)."""
    if profile == "duplicates":
        return [("", {"FORGE_RESPONSES_MAX_BYTES": str(DUPLICATES_MAX_BYTES)})]
    if profile == "short-ttl":
        ahead = {f"FORGE_{layer}_REFRESH_AHEAD": REFRESH_AHEAD for layer in ("USER", "SERVICE", "MODELS")}
        return [("refresh=off", dict(SHORT_TTLS)), ("refresh=on", {**SHORT_TTLS, **ahead})]
    return None
