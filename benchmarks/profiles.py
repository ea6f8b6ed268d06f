"""What the runner needs to know about each profile, and the cache-configuration matrix.

The load itself (user classes, stages) lives in ``locustfile.py``; this table says how many
tenants to seed, with which provider keys, how to warm up, and any fixed load size.
"""

from __future__ import annotations

from dataclasses import dataclass

from forge_ref.settings import LAYERS


@dataclass(frozen=True)
class Profile:
    name: str
    tenants: int
    providers: str | None = None  # seed pattern: None = 1-3 keys per user (see seed.py), else a fixed list
    warmup: str = "touch"  # touch: one request of each kind per tenant; locust: run the profile; none
    users: int | None = None  # fixed Locust users (cold-burst), else --users
    duration: float | None = None  # fixed measured seconds, else --duration
    probe: bool = False  # measured by the in-process concurrency-1 probe, not Locust
    quick_tenants: int | None = None


PROFILES = {
    # Three keys each, chat on openai only: with the keys layer off every build decrypts all three.
    "steady": Profile("steady", tenants=10, providers="openai,anthropic,gemini"),
    "mixed": Profile("mixed", tenants=50),
    "churn": Profile("churn", tenants=54),  # the last 4 are written to by the churn user (locustfile)
    "many-tenants": Profile("many-tenants", tenants=100_000, warmup="locust", quick_tenants=10_000),
    "cold-burst": Profile("cold-burst", tenants=5, warmup="none", users=200, duration=4.0),
    "models-heavy": Profile("models-heavy", tenants=50),
    "latency-c1": Profile("latency-c1", tenants=1, providers="openai", probe=True),
}
LOAD_PROFILES = [p for p in PROFILES if p != "latency-c1"]


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


def layers_on(config: str) -> set[str]:
    if config == "all":
        return set(LAYERS)
    if config == "none":
        return set()
    return {x.strip() for x in config.split(",") if x.strip()}


def variants(profile: str, config: str, tenants: int) -> list[tuple[str, dict[str, str]]]:
    """(variant label, extra server environment) runs of one profile and configuration."""
    on = layers_on(config)
    if profile == "cold-burst" and on & {"user", "service", "models"}:
        return [("coalesce=1", {"FORGE_COALESCE": "1"}), ("coalesce=0", {"FORGE_COALESCE": "0"})]
    if profile == "many-tenants" and on & {"user", "service"}:
        # Well below the working set of a run (about 5% of 100k Zipf tenants in 15 s), so evictions show.
        bound = str(max(50, tenants // 100))
        return [("", {}), ("bounded", {"FORGE_USER_MAX": bound, "FORGE_SERVICE_MAX": bound, "FORGE_MODELS_MAX": bound})]
    return [("", {})]
