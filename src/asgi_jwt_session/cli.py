"""``asgi-jwt-session keygen | decode | bench``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

import orjson

from asgi_jwt_session.errors import InvalidToken
from asgi_jwt_session.keys import Keyring, generate_secret
from asgi_jwt_session.tokens import TokenCodec

SECRET_ENV = "SESSION_SECRET"


def keygen(args: argparse.Namespace) -> int:
    secret = generate_secret()
    if args.jwk:
        print(orjson.dumps(Keyring(secret).to_jwks(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(secret)
    return 0


def decode(args: argparse.Namespace) -> int:
    raw = os.environ.get(args.secret_env, "")
    if not raw:
        print(f"error: set the secret in ${args.secret_env} (newest first, comma-separated)",
              file=sys.stderr)
        return 2
    token = args.cookie if args.cookie != "-" else sys.stdin.read()
    token = token.strip()
    if "=" in token.split(".", 1)[0]:  # "session=<token>" as copied from a browser
        token = token.split("=", 1)[1]
    try:
        codec = TokenCodec([s for s in raw.split(",") if s], cache_size=0,
                           leeway=args.leeway)
        claims = codec.decode(token)
    except (InvalidToken, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(claims, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    return 0


def bench(args: argparse.Namespace) -> int:
    """Run the benchmark suite of a source checkout (it lives beside the package)."""
    command = [sys.executable, "-m", "benchmarks.run", "--full" if args.full else "--quick"]
    try:
        return subprocess.call(command)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asgi-jwt-session",
                                     description="Encrypted JWT cookie sessions: tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    parser_keygen = commands.add_parser("keygen", help="print a new random secret")
    parser_keygen.add_argument("--jwk", action="store_true", help="print it as a JWK Set")
    parser_keygen.set_defaults(run=keygen)

    parser_decode = commands.add_parser(
        "decode", help=f"print a cookie's claims; the secret comes from ${SECRET_ENV}")
    parser_decode.add_argument("cookie", help="the cookie value (or name=value), - for stdin")
    parser_decode.add_argument("--secret-env", default=SECRET_ENV,
                               help="environment variable holding the secret(s)")
    parser_decode.add_argument("--leeway", type=int, default=10)
    parser_decode.set_defaults(run=decode)

    parser_bench = commands.add_parser(
        "bench", help="run the benchmark suite (from a source checkout)")
    parser_bench.add_argument("--full", action="store_true")
    parser_bench.set_defaults(run=bench)

    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
