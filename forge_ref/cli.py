"""The ``forge-ref`` command: serve, mock-provider, users create, provider-keys add.

Flags are generated from the settings table, so every option is a flag, an environment
variable and a README row at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import logs
from . import settings as settings_mod
from .app import StartupError, open_store, prepare_storage, serve
from .auth import display_prefix, hash_key, new_key
from .crypto import Crypto
from .errors import ForgeError
from .tracing import Tracer


def _add_setting_flags(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    for f in settings_mod.options():
        if not f.metadata["cli"] or (names is not None and f.name not in names):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (env {f.metadata['env']}, default {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    names = {f.name for f in settings_mod.options()}
    try:
        return settings_mod.from_env(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as exc:
        raise SystemExit(f"forge-ref: {exc}") from None


def _cmd_serve(args: argparse.Namespace) -> None:
    s = _settings(args)
    logs.configure(s.log_level)  # the format, plus the guards that keep secrets out of log lines
    try:
        serve(s, ready=lambda line: print(line, flush=True))
    except StartupError as exc:
        raise SystemExit(f"forge-ref: {exc}") from None


def _cmd_mock(args: argparse.Namespace) -> None:
    from forge_mock.app import run  # the gateway's code never imports the mock otherwise
    from forge_mock.config import ConfigError, options

    try:
        run(**options(args))
    except ConfigError as exc:
        raise SystemExit(f"forge-ref mock-provider: {exc}") from None


def _no_mock(args: argparse.Namespace) -> None:
    raise SystemExit("forge-ref mock-provider: the mock provider (package forge_mock, a development and "
                     "benchmark tool) is not installed here")


def _add_mock_parser(sub) -> None:
    m = sub.add_parser("mock-provider", help="run the fake OpenAI/Anthropic/Gemini upstream")
    try:
        from forge_mock.config import add_arguments  # only the option table: no handlers, no app
    except ImportError:  # a gateway-only install (the container image) leaves the mock out
        m.set_defaults(func=_no_mock)
        return
    add_arguments(m)
    m.set_defaults(func=_cmd_mock)


async def _open(args: argparse.Namespace):
    s = _settings(args)
    try:
        keys = await prepare_storage(s)
    except StartupError as exc:
        raise SystemExit(f"forge-ref: {exc}") from None
    return await open_store(s, None), Crypto(keys, Tracer())


def _cmd_users_create(args: argparse.Namespace) -> None:
    async def run() -> str:
        store, _ = await _open(args)
        key = new_key()
        try:
            await store.create_user(args.name, hash_key(key), display_prefix(key))
        finally:
            await store.close()
        return key

    print(asyncio.run(run()))  # alone on stdout: scripts capture it


def _cmd_provider_keys_add(args: argparse.Namespace) -> None:
    from . import validation

    async def run():
        store, crypto = await _open(args)
        try:
            user = await store.user_by_key_hash(hash_key(args.forge_key))
            if user is None:
                raise SystemExit("forge-ref: no user has that Forge key")
            body = {"provider": args.provider, "api_key": args.api_key, "base_url": args.base_url, "kind": args.kind}
            body = {k: v for k, v in body.items() if v is not None}
            spec = await validation.new_provider_key(body, settings_mod.from_env().allow_private_upstreams)
            await store.add_provider_key(user.id, spec.provider, spec.kind, crypto.encrypt(spec.api_key),
                                         spec.base_url, spec.model_mapping, spec.cache_ttl)
            return spec
        finally:
            await store.close()

    try:
        spec = asyncio.run(run())
    except ForgeError as exc:
        raise SystemExit(f"forge-ref: {exc.message}") from None
    print(f"added provider {spec.provider} ({spec.kind}) at {spec.base_url}")


def _cmd_gen_key(args: argparse.Namespace) -> None:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


def _cmd_rotate(args: argparse.Namespace) -> None:
    from .rotation import rotate_all

    s = _settings(args)
    if not s.encryption_key.strip():
        raise SystemExit('forge-ref: set FORGE_ENCRYPTION_KEY="NEW,OLD" (the new key first; the key file holds '
                         "the current key) to rotate")

    async def run():
        store, crypto = await _open(args)
        try:
            return await rotate_all(store, [k for k in s.encryption_key.split(",") if k.strip()], crypto)
        finally:
            await store.close()

    report = asyncio.run(run())
    print(f"{report.rows} provider keys: {report.rotated} re-encrypted, {report.already} already under the new key, "
          f"{report.raced} changed meanwhile (re-read), {report.undecryptable} undecryptable; {report.passes} pass(es)")
    if not report.done:
        raise SystemExit("forge-ref: rotation incomplete: keep the old key(s) in FORGE_ENCRYPTION_KEY and run it again")
    print("every provider key decrypts under the first key alone: the old key(s) can be removed")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forge-ref", description="OpenAI-compatible LLM gateway with measurable caches")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    _add_setting_flags(s)
    s.set_defaults(func=_cmd_serve)

    _add_mock_parser(sub)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    uc = users.add_parser("create", help="create a user; prints its Forge API key")
    uc.add_argument("name")
    _add_setting_flags(uc, ["db"])
    uc.set_defaults(func=_cmd_users_create)

    pk = sub.add_parser("provider-keys", help="manage provider keys").add_subparsers(dest="pk_command", required=True)
    pa = pk.add_parser("add", help="store a provider key for the user of a Forge key")
    pa.add_argument("--forge-key", required=True)
    pa.add_argument("--provider", required=True)
    pa.add_argument("--api-key", required=True)
    pa.add_argument("--base-url")
    pa.add_argument("--kind")
    _add_setting_flags(pa, ["db"])
    pa.set_defaults(func=_cmd_provider_keys_add)

    g = sub.add_parser("gen-key", help="print a new Fernet key (for FORGE_ENCRYPTION_KEY)")
    g.set_defaults(func=_cmd_gen_key)
    r = sub.add_parser("rotate-encryption-key",
                       help='re-encrypt every provider key under the first key of FORGE_ENCRYPTION_KEY="NEW,OLD"')
    _add_setting_flags(r, ["db"])
    r.set_defaults(func=_cmd_rotate)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
