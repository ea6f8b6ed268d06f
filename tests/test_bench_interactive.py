"""``./dev.sh locust``: Locust as its users know it, against a fresh local gateway; and the locustfile
pointed at a gateway of one's own with one Forge key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from support import GatewayThread, add_provider, create_user, free_port, settings_for

REPO = Path(__file__).resolve().parents[1]


def test_headless_run_writes_locusts_own_reports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks.interactive", "steady", "--headless", "-u", "4", "-r", "4",
                        "-t", "3s", "--html", str(tmp_path / "report.html"), "--csv", str(tmp_path / "stats"),
                        "--only-summary"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Locust" in (tmp_path / "report.html").read_text()
    rows = (tmp_path / "stats_stats.csv").read_text().splitlines()
    chat = next(line for line in rows if "/v1/chat/completions" in line).split(",")
    assert int(chat[2]) > 0 and int(chat[3]) == 0  # requests, failures


def test_the_web_ui_drives_a_swarm_and_everything_stops_with_it(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.interactive", "mixed", "--web-port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ui = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(ui, timeout=1).status_code == 200
                break
            except (httpx.HTTPError, AssertionError):
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert httpx.post(ui + "/swarm", data={"user_count": 3, "spawn_rate": 3}).json()["success"]
        deadline = time.monotonic() + 30
        while True:
            stats = httpx.get(ui + "/stats/requests").json()
            total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
            if total["num_requests"] >= 20:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.3)
        names = {s["name"] for s in stats["stats"]}
        assert "/v1/chat/completions" in names and total["num_failures"] == 0
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # the mock, forge-ref, Locust
    finally:
        proc.send_signal(signal.SIGINT)
        # Locust (up to 10 s), then the gateway and the mock (SIGTERM, each up to 5 s, then SIGKILL and 5 s
        # more): a worst case of about 30 s, which the loaded full suite reached twice. What matters is
        # that everything stops, checked below, not how fast on a loaded machine.
        proc.wait(90)
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_one_key_of_your_own_gateway(mock, tmp_path):
    """FORGE_KEY + FORGE_MODEL: no keys file, a provider name of the user's own choosing."""
    gw = GatewayThread(settings_for(tmp_path))
    try:
        key = create_user(gw.url)
        assert add_provider(gw.url, key, provider="my-groq", api_key="sk-own-0123456789",
                            base_url=mock.url + "/openai/v1").status_code == 201
        env = {"FORGE_KEY": key, "FORGE_MODEL": "my-groq/llama-3.1-8b", "FORGE_PROFILE": "steady",
               "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-m", "locust", "-f", str(REPO / "locustfile.py"), "--headless", "-u", "2",
                            "-r", "2", "-t", "2s", "--host", gw.url, "--json", "--only-summary"],
                           capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        chat = next(e for e in json.loads(r.stdout) if e["name"] == "/v1/chat/completions")
        assert chat["num_requests"] > 0 and chat["num_failures"] == 0
        calls = mock.stats()
        assert calls["openai.chat"] >= chat["num_requests"]
    finally:
        gw.stop()
