"""Run the column: ``python -m school_fees --port 8443 --notify-port 8081``.

The resident's pages are served over HTTPS on ``--port`` (the platform registers only https redirect
URIs); without ``--certfile`` a self-signed certificate for 127.0.0.1 is made for development. In
production the column sits behind its own HTTPS proxy with a real certificate, and ``--notify-port``
is not needed: the notify URL is on the same host.

``--notify-port`` serves the same app over plain HTTP on loopback for development: the platform
verifies TLS certificates when it posts a notification, so it cannot post to a self-signed one.
What protects a notification is its signature, checked on every post, not the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from school_fees.app import create_app


def self_signed(directory: Path) -> tuple[str, str]:
    """A development certificate for 127.0.0.1 and localhost (made once, kept in ``directory``)."""
    cert, key = directory / "dev-cert.pem", directory / "dev-key.pem"
    if cert.exists() and key.exists():
        return str(cert), str(key)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "school-fees development")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(pk, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key.write_bytes(
        pk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key.chmod(0o600)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(cert), str(key)


class _Server(uvicorn.Server):
    # Two servers share one process: signals are handled once, below, for both.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(args: argparse.Namespace) -> None:
    app = create_app()
    certfile, keyfile = args.certfile, args.keyfile
    if not certfile:
        certfile, keyfile = self_signed(Path(args.state_dir))
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=args.host,
                port=args.port,
                ssl_certfile=certfile,
                ssl_keyfile=keyfile,
                log_level="info",
            )
        )
    ]
    if args.notify_port:
        # The same app: lifespan once (on the first server), the second only serves requests.
        servers.append(
            _Server(
                uvicorn.Config(app, host="127.0.0.1", port=args.notify_port, lifespan="off", log_level="info")
            )
        )

    def stop() -> None:
        for s in servers:
            s.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    first = asyncio.create_task(servers[0].serve())
    while not servers[0].started and not first.done():  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.05)
    await asyncio.gather(first, *(s.serve() for s in servers[1:]))


def main() -> None:
    p = argparse.ArgumentParser(prog="school_fees", description="学费缴纳: an example third-party column")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443, help="the resident's pages (HTTPS)")
    p.add_argument(
        "--notify-port", type=int, default=0, help="plain HTTP on loopback for notifications (dev)"
    )
    p.add_argument("--certfile", default="")
    p.add_argument("--keyfile", default="")
    p.add_argument("--state-dir", default="var", help="where the development certificate is kept")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
