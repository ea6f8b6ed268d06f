"""The container files: the image runs what the e2e tests run, and compose sets only real settings.

No container runtime is needed. The Dockerfile and compose.yaml are read; the image's
ENTRYPOINT + CMD is started here with the image's ENV (moved to loopback, a temp database and
this virtualenv's bin directory), checked with the image's own HEALTHCHECK command (liveness) and
compose's health check of the gateways (readiness), sent a chat through the mock with the official
openai SDK, and stopped the way a container runtime stops it: draining, it is alive but not ready.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from support import ADMIN, add_provider, create_user, free_port, wait_http

from benchmarks.profiles import LOAD_PROFILES
from forge_mock.config import MockConfig, options
from forge_ref import settings as settings_mod
from forge_ref.cli import parser as cli_parser

ROOT = Path(__file__).resolve().parent.parent
SETTING_ENVS = {f.metadata["env"] for f in settings_mod.options()}
LOCUST_ENVS = set(re.findall(r'env_var="(\w+)"', (ROOT / "locustfile.py").read_text()))
SECRETS = {"FORGE_ENCRYPTION_KEY", "FORGE_ADMIN_TOKEN", "PGPASSWORD", "POSTGRES_PASSWORD"}
# What .env would hold, so that compose's ${VAR:?...} references resolve.
DOT_ENV = {"FORGE_ENCRYPTION_KEY": "k" * 43 + "=", "FORGE_ADMIN_TOKEN": "admin", "POSTGRES_PASSWORD": "pw"}
REFERENCE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")  # ${VAR}, ${VAR:-default}, ${VAR:?error}


def stages() -> dict[str, dict]:
    """Each build stage by name, in Dockerfile order (the last is what a plain build gives): its ENV
    (a stage built FROM another starts with that one's), ENTRYPOINT, CMD, USER, HEALTHCHECK, COPY."""
    out: dict[str, dict] = {}
    stage: dict = {}  # ARGs before the first FROM land here and are dropped
    for ins in DockerfileParser(str(ROOT / "Dockerfile")).structure:
        kw, value = ins["instruction"], ins["value"]
        if kw == "FROM":
            image, name = re.split(r"\s+AS\s+", value, flags=re.I)
            parent = out.get(image, {"ENV": {}})
            stage = out[name] = {**parent, "ENV": dict(parent["ENV"]), "COPY": []}
        elif kw == "ENV":
            stage["ENV"].update(item.split("=", 1) for item in shlex.split(value))
        elif kw in ("ENTRYPOINT", "CMD"):
            stage[kw] = json.loads(value)
        elif kw == "COPY":
            stage["COPY"].append(value)
        else:
            stage[kw] = value
    return out


def gateway_image() -> dict:
    return list(stages().values())[-1]


def health_command(image: dict) -> list[str]:
    return json.loads(re.split(r"\s+CMD\s+", image["HEALTHCHECK"], maxsplit=1)[1])


def compose_health_command(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"  # exec form: argv as given, no shell
    return test[1:]


def resolve(node, env: dict[str, str]):
    """Compose's interpolation of ${...} in every string of the parsed file."""
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def value(m: re.Match) -> str:
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"compose.yaml needs {name}: {arg}")
        return arg or ""

    return REFERENCE.sub(value, node)


def compose_file() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def compose(env: dict[str, str] = DOT_ENV) -> dict[str, dict]:
    return resolve(compose_file(), env)["services"]


def is_gateway(service: dict) -> bool:
    return service.get("image") == "forge-ref" and "entrypoint" not in service


def test_the_image_runs_what_the_e2e_tests_run(tmp_path, mock):
    image = gateway_image()
    argv = image["ENTRYPOINT"] + image["CMD"]
    assert argv == ["forge-ref", "serve"]
    # The e2e tests run `python -m forge_ref.cli serve`; the forge-ref command is that module's main.
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["forge-ref"] == "forge_ref.cli:main"
    env = image["ENV"]
    assert (env["FORGE_HOST"], env["FORGE_PORT"]) == ("0.0.0.0", "8000")
    assert {k for k in env if k.startswith("FORGE_")} <= SETTING_ENVS
    assert not SECRETS & set(env)
    assert image["USER"] not in ("root", "0")
    assert "STOPSIGNAL" not in image  # runtimes stop it with SIGTERM, which forge-ref handles

    port = free_port()
    run_env = {**env, "PATH": env["PATH"].replace("/opt/forge/bin", str(Path(sys.executable).parent))
               .replace("$PATH", "/usr/bin:/bin"),
               "FORGE_HOST": "127.0.0.1", "FORGE_PORT": str(port), "FORGE_DB": str(tmp_path / "forge.db"),
               "FORGE_ADMIN_TOKEN": ADMIN, "FORGE_ALLOW_PRIVATE_UPSTREAMS": "1",
               "FORGE_SHUTDOWN_DELAY": "5"}  # a drain window in which liveness and readiness differ
    url = f"http://127.0.0.1:{port}"

    def check(argv: list[str]) -> bool:  # a health check, run as the runtime would, inside the "container"
        return subprocess.run(argv, env=run_env, capture_output=True, timeout=10).returncode == 0

    def healthy() -> bool:  # the image's HEALTHCHECK: liveness
        return check(health_command(image))

    def ready() -> bool:  # compose's health check of the gateways: readiness
        return check(compose_health_command(compose()["gateway-1"]))

    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(argv, env=run_env, stdout=log, stderr=subprocess.STDOUT)  # found on run_env's PATH
    try:
        wait_http(url + "/health")
        assert healthy() and ready()
        key = create_user(url)
        r = add_provider(url, key, provider="openai", api_key="sk-test-container", base_url=mock.url + "/openai/v1")
        assert r.status_code == 201, r.text
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
        reply = client.chat.completions.create(model="openai/gpt-4o-mini",
                                               messages=[{"role": "user", "content": "hello from the image"}])
        assert "hello from the image" in reply.choices[0].message.content
        proc.send_signal(signal.SIGTERM)
        # Draining: not ready (compose stops counting the node as healthy), still alive (no restart).
        for _ in range(20):
            if not ready():
                break
        else:
            pytest.fail("still ready after SIGTERM")
        assert healthy() and proc.poll() is None
        assert proc.wait(30) == 0
        assert not healthy() and not ready()
    finally:
        proc.kill()
        proc.wait()
    assert "forge-ref listening on http://127.0.0.1" in (tmp_path / "serve.log").read_text()


def test_compose_gateways_set_only_real_settings():
    services = compose()
    gateways = {name: s for name, s in services.items() if is_gateway(s)}
    assert sorted(gateways) == ["gateway-1", "gateway-2"]
    for service in gateways.values():
        env = service["environment"]
        assert {k for k in env if k.startswith("FORGE_") or k == "REDIS_URL"} <= SETTING_ENVS
        s = settings_mod.from_env(env)
        assert (s.cache_backend, s.processes, s.encryption_key, s.admin_token) == (
            "redis", 1, DOT_ENV["FORGE_ENCRYPTION_KEY"], DOT_ENV["FORGE_ADMIN_TOKEN"])
        assert urlsplit(s.db).scheme == "postgresql" and urlsplit(s.db).password is None  # it comes as PGPASSWORD
        assert env["PGPASSWORD"] == DOT_ENV["POSTGRES_PASSWORD"]
        assert urlsplit(s.redis_url).hostname == "redis" and urlsplit(s.db).hostname == "postgres"


def test_compose_load_generator_sets_only_real_options():
    services = compose()
    port = gateway_image()["ENV"]["FORGE_PORT"]
    gateways = sorted(name for name, s in services.items() if is_gateway(s))
    for name in ("seed", "locust-master", "locust-worker"):
        env = services[name]["environment"]
        assert {k for k in env if k.startswith("FORGE_")} <= SETTING_ENVS | LOCUST_ENVS, name
    assert services["locust-master"]["environment"] == services["locust-worker"]["environment"]
    assert services["locust-master"]["environment"]["FORGE_HOSTS"] == ",".join(f"http://{g}:{port}" for g in gateways)
    assert services["seed"]["environment"]["FORGE_ENCRYPTION_KEY"] == DOT_ENV["FORGE_ENCRYPTION_KEY"]

    mock = services["mock"]
    args = cli_parser().parse_args(mock["entrypoint"][1:] + mock["command"])
    config = MockConfig(**options(args))  # raises ConfigError on a bad combination
    assert (args.func.__name__, config.host, config.timing_model) == ("_cmd_mock", "0.0.0.0", True)
    assert f"--mock-url http://mock:{config.port}" in services["seed"]["command"][-1]
    assert f"127.0.0.1:{config.port}/" in mock["healthcheck"]["test"][1]


def test_compose_runs_a_load_profile_that_exists():
    env = compose()["locust-master"]["environment"]
    assert env["FORGE_PROFILE"] == "realistic-chat"
    assert env["FORGE_PROFILE"] in LOAD_PROFILES


def test_image_checks_liveness_and_compose_checks_readiness():
    """The image's HEALTHCHECK asks /health (the process answers: restart it if not); compose's check of the
    gateways, which Locust waits on, asks /ready (its database and Redis answer, and it is not draining)."""
    port = gateway_image()["ENV"]["FORGE_PORT"]
    assert re.search(r"127\.0\.0\.1:%s/health'", health_command(gateway_image())[-1])
    services = compose()
    for name in ("gateway-1", "gateway-2"):
        argv = compose_health_command(services[name])
        assert argv[:2] == ["python", "-c"] and re.search(r"127\.0\.0\.1:%s/ready'", argv[2])
        assert f"os.environ.get('FORGE_PORT', '{port}')" in argv[2]  # the port the image serves on
    assert services["gateway-1"]["healthcheck"] == services["gateway-2"]["healthcheck"]


def test_compose_start_order_waits_on_health_checks():
    services = compose()
    image_health = "HEALTHCHECK" in gateway_image() and gateway_image()["HEALTHCHECK"] != "NONE"

    def checked(name: str) -> bool:
        return "healthcheck" in services[name] or (is_gateway(services[name]) and image_health)

    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            assert how["condition"] != "service_healthy" or checked(dep), f"{name} waits on {dep}, never checked"
    gateways = [name for name, s in services.items() if is_gateway(s)]
    for name in gateways:
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "redis": {"condition": "service_healthy"},
                                                "seed": {"condition": "service_completed_successfully"}}
    assert {g: {"condition": "service_healthy"} for g in gateways}.items() <= services["locust-master"]["depends_on"].items()


def test_secrets_come_only_from_the_uncommitted_env_file():
    raw = compose_file()["services"]
    for name, service in raw.items():
        for key, value in (service.get("environment") or {}).items():
            if key in SECRETS:
                m = REFERENCE.fullmatch(value)
                assert m and m[2] == "?", f"{name}: {key} must be ${{VAR:?...}} from .env, not {value!r}"
    required = {m[1] for m in REFERENCE.finditer((ROOT / "compose.yaml").read_text()) if m[2] == "?"}
    example = dict(re.findall(r"^(\w+)=(.*)$", (ROOT / ".env.example").read_text(), flags=re.M))
    assert set(example) == required and not any(example.values())
    for missing in required:
        with pytest.raises(KeyError, match=missing):
            compose({k: v for k, v in {**DOT_ENV}.items() if k != missing})
    assert "/.env" in (ROOT / ".gitignore").read_text().splitlines()
    for stage in stages().values():
        assert not SECRETS & set(stage["ENV"])
    assert not re.search(r"^\s*ARG\s+(" + "|".join(SECRETS) + ")", (ROOT / "Dockerfile").read_text(), flags=re.M)


def test_build_context_is_an_allow_list_of_what_the_images_copy():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"  # everything out first: .venv, results/raw, tests/data, .env, *.db, *.key
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "forge_ref", "forge_mock", "benchmarks", "locustfile.py"}
    copied = {src.rstrip("/") for stage in stages().values() for value in stage["COPY"]
              if not value.startswith("--from") for src in value.split()[:-1]}
    assert copied == allowed
    built = stages()
    assert not any("benchmarks" in value for value in built["build"]["COPY"])  # not in the gateway image
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    locust = next(d for d in dev if d.startswith("locust"))
    assert f'"{locust}"' in (ROOT / "Dockerfile").read_text()  # the load generator's Locust is the tests'
