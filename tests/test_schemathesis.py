"""Schemathesis, a third-party fuzzer, against the served ``/openapi.json`` of a real gateway and
the mock provider on loopback, with a valid Forge key (and the admin token where the document
says so).

* ``test_operation``: every operation, with cases generated from its schemas (examples, the
  coverage phase's edge values, then random ones);
* ``test_stateful``: the stateful phase, sequences that follow the document's links (a created
  provider key or Forge key is then changed and deleted).

Each response passes schemathesis' checks: no server error, a status the document declares, the
declared content type and headers (``WWW-Authenticate`` on a 401, ``Allow`` on a 405), a body
(or each stream event) that matches the declared schema; invalid data refused with a 4xx, a
missing credential with a 401, an undeclared method with a 405 that carries ``Allow``; and, in
the stateful phase, a deleted resource gone (404) and a created one there.

``FORGE_SCHEMATHESIS_EXAMPLES`` sets the examples per operation (default 15, which keeps the
default run short; CI sets 100); the stateful phase runs as many scenarios.

Two things are pinned so that every request stays on 127.0.0.1: a generated ``base_url`` of a
provider key is replaced by the mock's (the gateway would otherwise resolve, and later call, any
host schemathesis makes up: ``tests/test_fuzz.py`` fuzzes URLs with the gateway's own resolver
pinned to refusals), and the HTTP session ignores proxy variables.
"""

from __future__ import annotations

import os

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)
from support import ADMIN, GatewayThread, add_provider, create_user, settings_for

from forge_ref import openapi

EXAMPLES = int(os.environ.get("FORGE_SCHEMATHESIS_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, missing_required_header, unsupported_method,
          ignored_auth, use_after_free, ensure_resource_availability]
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.explicit, Phase.reuse, Phase.generate])


class Api:
    """The gateway under test and the account schemathesis acts as, renewed when a case deletes
    the user, resets or revokes its key, or scopes it (each a documented, valid request)."""

    def __init__(self, tmp, mock_url: str) -> None:
        self.gw = GatewayThread(settings_for(tmp, read_timeout=2.0, connect_timeout=1.0, max_body_bytes=65536,
                                             models_timeout=2.0))
        self.url = self.gw.url
        self.mock_url = mock_url
        self.session = requests.Session()
        self.session.trust_env = False  # never a proxy: everything is on 127.0.0.1
        self.renewals = 0
        self.calls = 0
        self.statuses: dict[int, int] = {}
        self.seen: set[tuple[str, str, int]] = set()  # (method, path template, status)
        self.renew()

    def renew(self) -> None:
        self.key = create_user(self.url, "schemathesis")
        for provider, path in (("openai", "/openai/v1"), ("anthropic", "/anthropic")):  # the document's examples
            r = add_provider(self.url, self.key, provider=provider, kind=provider,
                             api_key=f"sk-st-{provider}-0123456789", base_url=self.mock_url + path)
            assert r.status_code == 201, r.text
        self.renewals += 1

    def headers(self, case) -> dict[str, str]:
        admin = any("adminToken" in req for req in case.operation.definition.raw.get("security", []))
        return {"Authorization": f"Bearer {ADMIN if admin else self.key}"}

    def prepare(self, case) -> None:
        """Keep every upstream on loopback: a provider key's base_url is the mock's."""
        if isinstance(case.body, dict) and isinstance(case.body.get("base_url"), str):
            case.body["base_url"] = self.mock_url + "/openai/v1"

    def after(self, case, response) -> None:
        self.calls += 1
        self.seen.add((case.method.upper(), case.operation.path, response.status_code))
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        path, method = case.operation.path, case.method.upper()
        if response.status_code >= 300 or not (path.startswith("/v1/users/me") and method != "GET"):
            return
        # The key may be gone (user deleted, key reset or revoked) or scoped now (it manages no more).
        r = httpx.get(self.url + "/v1/users/me/keys", headers={"Authorization": f"Bearer {self.key}"})
        if r.status_code == 401 or any(k["key_prefix"] == self.key[:12] and k["providers"] is not None
                                       for k in r.json().get("data", [])):
            self.renew()

    def call(self, case):
        self.prepare(case)
        response = case.call(base_url=self.url, session=self.session, headers=self.headers(case), timeout=15)
        self.after(case, response)
        return response

    def close(self) -> None:
        self.session.close()
        self.gw.stop()


@pytest.fixture(scope="module")
def api(mock, tmp_path_factory):
    a = Api(tmp_path_factory.mktemp("schemathesis"), mock.url)
    yield a
    print(f"\nschemathesis: {a.calls} calls, statuses {sorted(a.statuses.items())}, {a.renewals} accounts")
    a.close()


# The operations are known when tests are collected (one test each), from the document the
# gateway serves; ``api_schema`` checks that the served one is this very document, and loads it
# from the wire for the stateful phase.
schema = schemathesis.openapi.from_dict(openapi.document())


@pytest.fixture(scope="module")
def api_schema(api):
    served = httpx.get(api.url + "/openapi.json").json()
    assert served == openapi.document()
    loaded = schemathesis.openapi.from_dict(served)
    loaded.config.update(base_url=api.url)
    return loaded


@schema.parametrize()
@HYPOTHESIS
def test_operation(case, api, api_schema):
    response = api.call(case)
    case.validate_response(response, checks=CHECKS)


def test_stateful(api_schema, api):
    """Sequences along the document's links. A failed check is recorded, not raised: Hypothesis
    would replay the scenario to shrink it against a server whose state moved on, and report
    that as flaky generation instead of the failure. For the same reason a flaky-generation
    error ends a round and starts another (as schemathesis' own runner does), until the
    scenarios ran; every recorded failure fails the test."""
    failures: list[str] = []

    class Workflow(api_schema.as_state_machine()):
        def call(self, case, **kwargs):
            return api.call(case)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}")

    # The links must be followed: a created resource changed and deleted (a generated name or id
    # almost never names one that exists). A round may miss one by chance: another round then.
    followed = {("PUT", "/v1/provider-keys/{provider}", 200), ("DELETE", "/v1/provider-keys/{provider}", 204),
                ("PATCH", "/v1/users/me/keys/{key_id}", 200), ("DELETE", "/v1/users/me/keys/{key_id}", 204)}
    before = api.calls
    api.seen.clear()
    rounds = 0
    while (api.calls - before < EXAMPLES * 3 or not followed <= api.seen) and rounds < 8:
        rounds += 1
        try:  # generation alone, as schemathesis' runner does: no replays
            Workflow.run(settings=settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                                           stateful_step_count=6, suppress_health_check=list(HealthCheck),
                                           phases=[Phase.generate]))
        except FlakyStrategyDefinition:
            continue
    assert not failures, "\n\n".join(failures[:5])
    assert api.calls - before >= EXAMPLES * 3, (api.calls - before, rounds)  # scenarios of several calls ran
    print(f"\nstateful: {rounds} round(s), {api.calls - before} calls")
    assert followed <= api.seen, sorted(followed - api.seen)
