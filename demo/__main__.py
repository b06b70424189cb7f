"""``python -m demo``: seed the database if needed and serve the demo with uvicorn.

Options come from the command line or the environment: ``HOST``, ``PORT``,
``DATABASE_URL`` (default: a SQLite file in ``demo/``), ``SESSION_SECRET`` (default: one
made once and kept in ``demo/.secret``), ``SSL_CERTFILE`` / ``SSL_KEYFILE`` for https.

``--https`` (or ``HTTPS=1``): https with a self-signed certificate the demo makes, and
device binding (DBSC) on; it prints the Chromium flags that trust the certificate and
turn DBSC on.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import uvicorn

from demo.accounts import DEMO_ACCOUNTS
from demo.app import create_app, database_url
from demo.tls import DBSC_FLAGS, self_signed_certificate


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument("--ssl-certfile", default=os.environ.get("SSL_CERTFILE"))
    parser.add_argument("--ssl-keyfile", default=os.environ.get("SSL_KEYFILE"))
    parser.add_argument("--https", action="store_true", default=bool(os.environ.get("HTTPS")),
                        help="a self-signed certificate, and device binding (DBSC) on")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    spki = None
    if args.https and not args.ssl_certfile:
        directory = Path(tempfile.mkdtemp(prefix="asgi-jwt-session-demo-tls-"))
        cert_file, key_file, spki = self_signed_certificate(directory, args.host)
        args.ssl_certfile, args.ssl_keyfile = str(cert_file), str(key_file)

    scheme = "https" if args.ssl_certfile else "http"
    width = max(len(account.email) for account in DEMO_ACCOUNTS)
    print("asgi-jwt-session demo")
    print(f"  database: {database_url()}")
    print("  demo accounts (seeded on first start; demo passwords, not for real use):")
    for account in DEMO_ACCOUNTS:
        print(f"    {account.email:<{width}}  {account.role:<9}  {account.password}")
    if args.https:
        print("  device binding (DBSC) on: the session cookie lives 10 minutes, renewed "
              "by proofs from the browser's key")
    if spki is not None:
        print("  self-signed certificate; Chromium trusts it (and turns DBSC on) with:")
        print(f"    chromium {DBSC_FLAGS} --ignore-certificate-errors-spki-list={spki} "
              f"https://localhost:{args.port}/")
    print(f"  open {scheme}://{args.host}:{args.port}/", flush=True)

    uvicorn.run(
        create_app(device_binding=args.https),
        host=args.host,
        port=args.port,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        proxy_headers=True,  # X-Forwarded-Proto from a TLS proxy on localhost: https
    )


if __name__ == "__main__":
    main()
