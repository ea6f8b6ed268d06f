"""A peer gateway run against the same mock, side by side: LiteLLM's proxy.

``litellm[proxy]`` is installed from PyPI into its own virtualenv under ``.bench-cache/``
(gitignored), once; it is configured with one model, ``openai/gpt-4o-mini``, whose
``api_base`` is the mock's ``/openai/v1``, a master key and no database, and it is run on
the server CPU like forge-ref.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from . import procs

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench-cache" / "litellm-venv"
MASTER_KEY = "sk-bench-master"
HEALTH_PATH = "/health/liveliness"

CONFIG = """\
model_list:
  - model_name: openai/gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-bench-peer
litellm_settings:
  telemetry: false
  drop_params: true
  set_verbose: false
  json_logs: false
general_settings:
  master_key: {master_key}
  disable_spend_logs: true
  disable_reset_budget: true
"""


def litellm_bin() -> Path:
    return VENV / "bin" / "litellm"


def ensure_litellm(*, verbose: bool = True) -> Path:
    """The LiteLLM proxy executable, installing ``litellm[proxy]`` into its own venv if needed."""
    if litellm_bin().exists():
        return litellm_bin()
    if verbose:
        print(f"installing litellm[proxy] into {VENV} (once) ...", file=sys.stderr, flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "litellm[proxy]"]
    subprocess.run(pip, check=True, timeout=1800)
    if not litellm_bin().exists():
        raise RuntimeError(f"litellm[proxy] installed but {litellm_bin()} is missing")
    return litellm_bin()


def write_config(path: Path, mock_url: str) -> Path:
    path.write_text(CONFIG.format(api_base=mock_url.rstrip("/") + "/openai/v1", master_key=MASTER_KEY))
    return path


def start_litellm(ctx, port: int, name: str) -> procs.Proc:
    cfg = write_config(ctx.raw / f"{name}.litellm.yaml", ctx.mock_url)
    cmd = [str(ensure_litellm(verbose=False)), "--config", str(cfg), "--host", procs.HOST, "--port", str(port),
           "--num_workers", "1"]
    # LITELLM_LOCAL_MODEL_COST_MAP: use the bundled cost map instead of fetching it from GitHub
    # at start-up (benchmark traffic stays on loopback).
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "DISABLE_ADMIN_UI": "True", "NO_DOCS": "True", "DATABASE_URL": None, "LITELLM_MODE": "PRODUCTION"}
    return procs.start(name, cmd, ctx.raw, env=env, cpus=ctx.cpu("server"), cwd=str(ctx.raw))
