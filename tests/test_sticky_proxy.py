"""The sticky server behind a real nginx, configured as docs/sticky.md says."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from storekit.reference.sticky import StickyServer, whoami
from storekit.testing.http_client import loopback_sources, request

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"
)


@contextmanager
def nginx_in_front_of(upstream_port: int, tmp: Path) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temps = " ".join(f"{kind}_temp_path {tmp}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; client_body_temp_path {tmp}/body; {temps}\n"
        f"  server {{ listen 127.0.0.1:{port};\n"
        f"    location / {{ proxy_pass http://127.0.0.1:{upstream_port};\n"
        "      proxy_set_header X-Forwarded-For $remote_addr; } } }\n"
    )
    assert NGINX is not None
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp), "-e", f"{tmp}/error.log"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert proc.poll() is None, (tmp / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen within 10s"
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def slot_via(port: int, source: str) -> int:
    return int(request("127.0.0.1", port, source=source).text.split()[1])


def test_header_routing_behind_nginx_keeps_each_client_on_its_worker(tmp_path: Path) -> None:
    with (
        StickyServer(whoami, workers=4, routing="header", trusted_proxies=["127.0.0.1"]) as server,
        nginx_in_front_of(server.port, tmp_path) as port,
    ):
        for client in loopback_sources(24, start=20):
            assert {slot_via(port, client) for _ in range(3)} == {server.slot_for(client)}
        assert len({server.slot_for(client) for client in loopback_sources(24, start=20)}) > 1


def test_ip_hash_behind_nginx_puts_every_client_on_one_worker(tmp_path: Path) -> None:
    """Why header routing exists: through a proxy, every connection comes from the proxy."""
    with StickyServer(whoami, workers=4) as server, nginx_in_front_of(server.port, tmp_path) as port:
        assert {slot_via(port, client) for client in loopback_sources(24, start=20)} == {
            server.slot_for("127.0.0.1")
        }
