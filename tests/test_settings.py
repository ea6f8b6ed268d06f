from pathlib import Path

import pytest

from forge_ref import settings as s


def test_every_setting_is_documented_in_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [f.metadata["env"] for f in s.options() if f.metadata["env"] not in readme]
    assert missing == []


def test_readme_table_is_current():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert s.markdown_table() in readme, (
        "regenerate with: python -c 'from forge_ref.settings import markdown_table; print(markdown_table())'")


def test_env_then_overrides():
    got = s.from_env({"FORGE_PORT": "9", "FORGE_CACHES": "user,keys", "FORGE_COALESCE": "0"}, db="x.db")
    assert (got.port, got.caches, got.coalesce, got.db) == (9, "user,keys", False, "x.db")


def test_layers():
    assert s.parse_layers("all") == dict.fromkeys(s.LAYERS, True)
    assert s.parse_layers("none") == dict.fromkeys(s.LAYERS, False)
    assert s.parse_layers("user, models") == {"user": True, "service": False, "keys": False, "models": True,
                                              "adapters": False, "responses": False}
    with pytest.raises(ValueError, match="bogus"):
        s.parse_layers("user,bogus")


def test_ttl_zero_turns_layer_off():
    assert s.Settings(user_ttl=0).layers()["user"] is False
    assert s.Settings(models_ttl=0).layers()["models"] is False
    assert s.Settings(responses_max_bytes=0).layers()["responses"] is False
    assert s.Settings(responses_max_ttl=0).layers()["responses"] is False


def test_label_round_trip():
    for spec in ("all", "none", "user,service", "keys,models,adapters"):
        assert s.layers_label(s.parse_layers(spec)) == spec


def test_refresh_ahead_and_jitter_from_the_environment():
    got = s.from_env({"FORGE_USER_REFRESH_AHEAD": "0.8", "FORGE_MODELS_TTL_JITTER": "0.1"})
    assert (got.user_refresh_ahead, got.models_ttl_jitter, got.service_refresh_ahead) == (0.8, 0.1, 0.0)


@pytest.mark.parametrize("env, value", [("FORGE_USER_TTL_JITTER", "-0.1"), ("FORGE_SERVICE_TTL_JITTER", "1"),
                                        ("FORGE_MODELS_REFRESH_AHEAD", "1.5")])
def test_refresh_ahead_and_jitter_are_fractions_below_one(env, value):
    with pytest.raises(ValueError, match=f"{env} is a fraction of the TTL, at least 0 \\(off\\) and below 1"):
        s.from_env({env: value})
