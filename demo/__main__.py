"""``python -m demo``: seed the database if needed and serve the demo with uvicorn.

Options come from the command line or the environment: ``HOST``, ``PORT``,
``DATABASE_URL`` (default: a SQLite file in ``demo/``), ``SESSION_SECRET`` (default: one
made once and kept in ``demo/.secret``), ``SSL_CERTFILE`` / ``SSL_KEYFILE`` for https.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from demo.accounts import DEMO_ACCOUNTS
from demo.app import create_app, database_url


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument("--ssl-certfile", default=os.environ.get("SSL_CERTFILE"))
    parser.add_argument("--ssl-keyfile", default=os.environ.get("SSL_KEYFILE"))
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()

    scheme = "https" if args.ssl_certfile else "http"
    width = max(len(account.email) for account in DEMO_ACCOUNTS)
    print("asgi-jwt-session demo")
    print(f"  database: {database_url()}")
    print("  demo accounts (seeded on first start; demo passwords, not for real use):")
    for account in DEMO_ACCOUNTS:
        print(f"    {account.email:<{width}}  {account.role:<9}  {account.password}")
    print(f"  open {scheme}://{args.host}:{args.port}/", flush=True)

    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        proxy_headers=True,  # X-Forwarded-Proto from a TLS proxy on localhost: https
    )


if __name__ == "__main__":
    main()
