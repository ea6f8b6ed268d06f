"""Two forge-ref nodes (separate server processes, separate ports) on one PostgreSQL and one
Redis: writes through one node are honoured by the other within 50 ms; a restart loses nothing,
not even under load (a rolling restart).

Needs PostgreSQL and Redis (fixtures ``pg_db`` and ``redis_url``)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import httpx
import psycopg
import redis
from support import Load, ServerProcess, add_provider, create_user

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
KEY = "8vJ8L6b3zC7n2D0p4Qm1Xk9sT5yW3aR6uE0hF2gI4jM="


def node(tmp_path, pg_db, redis_url, prefix, processes=1, *, env=None, port=None):
    return ServerProcess(tmp_path, "--db", pg_db, "--cache-backend", "redis", "--processes", str(processes),
                         env={"REDIS_URL": redis_url, "FORGE_REDIS_PREFIX": prefix, "FORGE_ENCRYPTION_KEY": KEY,
                              **(env or {})}, port=port)


def post(n, key, body=CHAT):
    with httpx.Client() as c:  # a new connection: with --processes 2 either process may answer
        return c.post(n.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def test_two_nodes_on_postgres_and_redis(tmp_path, pg_db, redis_url, mock):
    prefix = f"forge-nodes:{uuid.uuid4().hex[:8]}:"
    a = node(tmp_path, pg_db, redis_url, prefix, processes=2)
    b = node(tmp_path, pg_db, redis_url, prefix, processes=2)
    try:
        key = create_user(a.url)
        assert add_provider(b.url, key, provider="openai", api_key="sk-a",
                            base_url=mock.url + "/openai/v1").status_code == 201
        for _ in range(10):  # both nodes (and both processes of each) serve and cache the user
            assert post(a, key).status_code == 200 and post(b, key).status_code == 200

        # a key reset through a: refused by every process of b within 50 ms
        new = httpx.post(a.url + "/v1/users/me/reset-key", headers={"Authorization": f"Bearer {key}"}).json()["api_key"]
        time.sleep(0.05)
        assert [post(b, key).status_code for _ in range(10)] == [401] * 10
        assert post(b, new).status_code == 200

        # a provider-key change through b: honoured by a within 50 ms
        r = httpx.put(b.url + "/v1/provider-keys/openai", json={"api_key": "sk-invalid-x"},
                      headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 200
        time.sleep(0.05)
        assert {post(a, new).status_code for _ in range(10)} == {502}

        # a node restart loses nothing
        b.stop()
        b2 = node(tmp_path, pg_db, redis_url, prefix)
        try:
            httpx.put(b2.url + "/v1/provider-keys/openai", json={"api_key": "sk-good-again"},
                      headers={"Authorization": f"Bearer {new}"}).raise_for_status()
            assert post(b2, new).status_code == 200
            me = httpx.get(b2.url + "/v1/users/me", headers={"Authorization": f"Bearer {new}"}).json()
            assert me["name"] == "alice"
        finally:
            b2.stop()
    finally:
        a.stop()
        b.stop()
        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(prefix + "*"):
            r.delete(k)


class Balancer:
    """A client-side load balancer: polls each node's /ready every 50 ms and sends to the ready ones
    in turn, each request on a new connection; a refused connection (nothing was sent) goes to the
    next node."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.ready = set(urls)
        self.served = dict.fromkeys(urls, 0)
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    ok = httpx.get(url + "/ready", timeout=0.5).status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.ready.add if ok else self.ready.discard)(url)
            time.sleep(0.05)

    def send(self, method: str, path: str, **kw) -> httpx.Response:
        first = next(self._turn)
        order = [self.urls[(first + i) % len(self.urls)] for i in range(len(self.urls))]
        order.sort(key=lambda url: url not in self.ready)  # ready nodes first, in turn
        for url in order:
            try:
                with httpx.Client(timeout=10) as c:
                    r = c.request(method, url + path, **kw)
            except httpx.ConnectError:
                continue
            self.served[url] += 1
            return r
        raise httpx.ConnectError("every node refused")

    def stop(self) -> None:
        self._stop.set()
        self._poller.join(5)


def test_rolling_restart_under_load_loses_no_request_and_no_usage_row(tmp_path, pg_db, redis_url, mock):
    prefix = f"forge-rolling:{uuid.uuid4().hex[:8]}:"
    # A balancer polling /ready every 50 ms stops sending to a stopping node well within 0.5 s.
    env = {"FORGE_SHUTDOWN_DELAY": "0.5", "FORGE_USAGE_FLUSH_INTERVAL": "0.2"}
    a = node(tmp_path, pg_db, redis_url, prefix, env=env)
    b = node(tmp_path, pg_db, redis_url, prefix, env=env)
    balancer = Balancer([a.url, b.url])
    loads: list[Load] = []
    try:
        key = create_user(a.url)
        assert add_provider(b.url, key, provider="openai", api_key="sk-a",
                            base_url=mock.url + "/openai/v1").status_code == 201
        auth = {"Authorization": f"Bearer {key}"}

        def answer(body: dict):
            r = balancer.send("POST", "/v1/chat/completions", json=body, headers=auth)
            done = r.status_code == 200 and (not body.get("stream") or r.text.rstrip().endswith("data: [DONE]"))
            return 200 if done else (r.status_code, r.text[:200])

        loads = [Load(lambda body=body: answer(body)) for body in (CHAT, CHAT, dict(CHAT, stream=True))]
        loads[0].more(20)
        for old in (b, a):  # one node after the other, each back before the next goes
            served_before = balancer.served[old.url]
            assert old.stop() == 0
            new = node(tmp_path, pg_db, redis_url, prefix, env=env, port=old.port)
            deadline = time.monotonic() + 10
            while balancer.served[old.url] < served_before + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert balancer.served[old.url] >= served_before + 20, "the restarted node got no traffic"
            if old is b:
                b = new
            else:
                a = new
        answers = [x for load in loads for x in load.stop()]
        assert len(answers) > 100 and set(answers) == {200}, [x for x in answers if x != 200][:5]
    finally:
        for load in loads:
            load.stop()
        balancer.stop()
        codes = [a.stop(), b.stop()]  # both drain and flush their usage rows
        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(prefix + "*"):
            r.delete(k)
    assert codes == [0, 0]
    with psycopg.connect(pg_db) as conn:
        rows = conn.execute("SELECT count(*) FROM usage WHERE status = 200").fetchone()[0]
    assert rows == len(answers)  # every answered request left its usage row, across four processes
