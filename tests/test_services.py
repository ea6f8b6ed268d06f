import pytest
from cryptography.fernet import Fernet

from forge_ref.crypto import Crypto
from forge_ref.errors import NotFound
from forge_ref.services import ProviderService
from forge_ref.store import ProviderRow
from forge_ref.tracing import Tracer


def rows(cr):
    return [
        ProviderRow(1, "my", "openai", cr.encrypt("k-my"), "http://a", {}, 0.0),
        ProviderRow(2, "my-groq", "openai", cr.encrypt("k-groq"), "http://b", {"fast": "llama-3-8b"}, 0.0),
        ProviderRow(3, "anthropic", "anthropic", cr.encrypt("k-ant"), "http://c", {}, 0.0),
    ]


@pytest.fixture
def crypto():
    c = Tracer()
    return Crypto([Fernet.generate_key().decode()], c), c


def test_routing_longest_prefix_case_insensitive_and_aliases(crypto):
    cr, _ = crypto
    svc = ProviderService(7, rows(cr), cr, lazy_keys=True)
    assert svc.route("my-groq/llama/70b")[0].provider == "my-groq"
    assert svc.route("my-groq/llama/70b")[1] == "llama/70b"
    assert svc.route("MY/gpt-4o")[0].provider == "my"
    assert svc.route("fast")[0].provider == "my-groq" and svc.route("fast")[1] == "llama-3-8b"
    assert svc.route("my-groq/fast")[1] == "llama-3-8b"
    with pytest.raises(NotFound):
        svc.route("other/x")
    with pytest.raises(NotFound):
        svc.route("gpt-4o")
    with pytest.raises(NotFound):
        svc.route("my/")


def test_lazy_keys_decrypt_once_only_what_is_needed(crypto):
    cr, c = crypto
    r = rows(cr)
    svc = ProviderService(7, r, cr, lazy_keys=True)
    assert c.total("decryptions") == 0
    assert svc.key(r[2]).reveal() == "k-ant"
    assert svc.key(r[2]).reveal() == "k-ant"
    assert c.total("decryptions") == 1


def test_eager_keys_decrypt_all_at_build(crypto):
    cr, c = crypto
    r = rows(cr)
    svc = ProviderService(7, r, cr, lazy_keys=False)
    assert c.total("decryptions") == 3
    svc.key(r[0])
    assert c.total("decryptions") == 3
