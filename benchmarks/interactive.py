"""``./dev.sh locust [PROFILE] [LOCUST ARGS]``: Locust's web UI against a fresh local forge-ref.

Starts the mock provider and ``forge-ref serve`` (SQLite, every cache layer on, Server-Timing on)
on free loopback ports, seeds the profile's tenants, then runs Locust with the locustfile, the
profile and the gateway as host, its web UI on 127.0.0.1:8089. Everything stops with Locust
(Ctrl-C). Arguments after the profile go to Locust unchanged: ``--headless -u 20 -t 30s --html
report.html --csv stats`` runs without the UI and writes Locust's own reports.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from . import procs
from .profiles import LOAD_PROFILES, PROFILES
from .seed import seed
from .targets import ADMIN, REPO, start_mock

LOCUSTFILE = REPO / "locustfile.py"


def gateway_env(db: str, caches: str) -> dict[str, str]:
    return {"FORGE_DB": db, "FORGE_CACHES": caches, "FORGE_ADMIN_TOKEN": ADMIN, "FORGE_ALLOW_PRIVATE_UPSTREAMS": "1",
            "FORGE_SERVER_TIMING": "1", "FORGE_LOG_LEVEL": "warning"}


def run(profile: str, locust_args: list[str], *, caches: str = "all", web_port: int = 8089,
        tenants: int | None = None) -> int:
    spec = PROFILES[profile]
    with tempfile.TemporaryDirectory(prefix="forge-locust-") as tmp:
        work = Path(tmp)
        mock, mock_url = start_mock(work, latency_ms=0.0, chunk_delay_ms=0.0, cpus=None)
        server = None
        try:
            procs.wait_ready(mock, mock_url + "/_mock/stats")
            db, keys = str(work / "forge.db"), work / "keys.json"
            n = tenants or spec.quick_tenants or spec.tenants
            seed(db, n, mock_url, keys, providers=spec.providers)
            port = procs.free_port()
            base = f"http://{procs.HOST}:{port}"
            server = procs.start("forge-ref", [sys.executable, "-m", "forge_ref.cli", "serve", "--port", str(port)],
                                 work, env=gateway_env(db, caches), cwd=str(REPO))
            procs.wait_ready(server, base + "/health")
            env = dict(os.environ, FORGE_PROFILE=profile, FORGE_KEYS_FILE=str(keys))
            cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", base,
                   "--web-host", "127.0.0.1", "--web-port", str(web_port), *locust_args]
            if "--headless" not in locust_args:
                print(f"forge-ref ({caches}) at {base}, mock at {mock_url}, {n} tenants seeded for {profile}; "
                      f"Locust's web UI: http://127.0.0.1:{web_port} (Ctrl-C stops everything)", file=sys.stderr)
            locust = subprocess.Popen(cmd, env=env, cwd=str(REPO))
            try:
                return locust.wait()
            except KeyboardInterrupt:
                # A terminal's Ctrl-C reaches Locust too, a SIGINT sent to this process alone does not: pass
                # it on, so Locust stops first (writing its reports) and the gateway it was loading drains
                # at once instead of serving a swarm nobody stops until its shutdown timeout.
                locust.send_signal(signal.SIGINT)
                try:
                    locust.wait(10)
                except subprocess.TimeoutExpired:
                    locust.kill()
                    locust.wait()
                return 0
        finally:
            if server is not None:
                server.stop()
            mock.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="./dev.sh locust", description=__doc__.split("\n\n")[0])
    p.add_argument("profile", nargs="?", default="mixed", choices=sorted(LOAD_PROFILES),
                   help="the load profile (default: mixed)")
    p.add_argument("--caches", default="all", help="forge-ref's cache layers: all, none or a list (default all)")
    p.add_argument("--tenants", type=int, help="tenants to seed (default: the profile's)")
    p.add_argument("--web-port", type=int, default=8089)
    args, rest = p.parse_known_args(argv)
    return run(args.profile, rest, caches=args.caches, web_port=args.web_port, tenants=args.tenants)


if __name__ == "__main__":
    raise SystemExit(main())
