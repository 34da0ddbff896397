"""`storekit serve` as reference.sticky.main(): messages for bad flags; a real master in a subprocess."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from storekit.reference.sticky import main
from storekit.testing.http_client import loopback_sources, process_alive, request


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["app_without_colon"], "MODULE:APP expects 'module:attribute', got 'app_without_colon'"),
        (["no_such_module_xyz:app"], "cannot load 'no_such_module_xyz:app'"),
        (["os:sep"], "'os:sep' is a str, not a WSGI or ASGI app or app factory"),
        (["storekit.reference.sticky:whoami", "--bind", "8000"], "--bind expects HOST:PORT, got '8000'"),
        (
            ["storekit.reference.sticky:whoami", "--workers", "0"],
            "--workers expects at least 1 worker process, got 0",
        ),
        (
            ["storekit.reference.sticky:whoami", "--threads", "0"],
            "--threads expects at least 1 thread per worker",
        ),
        (
            ["storekit.reference.sticky:whoami", "--routing", "sticky"],
            "--routing expects one of ip-hash, round-robin",
        ),
        (["storekit.reference.sticky:whoami", "--mode", "ebpf"], "mode expects one of auto, kernel, handoff"),
        (
            ["storekit.reference.sticky:whoami", "--routing", "header", "--mode", "kernel"],
            "routing 'header' needs the master to read the request head; use mode 'handoff' or 'auto'",
        ),
        (
            ["storekit.reference.sticky:whoami", "--connection-limit", "0"],
            "--connection-limit expects a whole number of connections, 1 or more, got 0",
        ),
        (
            ["storekit.reference.sticky:whoami", "--per-address-limit", "-3"],
            "--per-address-limit expects a whole number of connections, 1 or more, got -3",
        ),
        (
            ["storekit.reference.sticky:whoami", "--header-timeout", "0"],
            "--header-timeout must be a positive number of seconds; got 0.0; for example 10",
        ),
        (
            ["storekit.reference.sticky:whoami", "--idle-timeout", "inf"],
            "--idle-timeout must be a positive number of seconds; got inf; for example 10",
        ),
        (
            ["storekit.reference.sticky:whoami", "--routing", "header", "--trusted-proxy", "nginx"],
            "--trusted-proxy expects an IP address or network, e.g. 127.0.0.1 or 10.0.0.0/8, got 'nginx'",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message_that_quotes_the_value(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("storekit serve: error: ")
    assert message in err


def test_sticky_server_checks_its_limits_as_the_command_line_does() -> None:
    from storekit.reference.sticky import StickyServer, whoami

    with pytest.raises(
        ValueError, match=r"--per-address-limit expects a whole number of connections, .* got 0"
    ):
        StickyServer(whoami, per_address_limit=0)
    with pytest.raises(ValueError, match=r"--trusted-proxy expects an IP address or network, .* got 'proxy'"):
        StickyServer(whoami, routing="header", trusted_proxies=["proxy"])


def test_unparseable_number_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["storekit.reference.sticky:whoami", "--workers", "many"]) == 2
    assert "--workers: invalid int value: 'many'" in capsys.readouterr().err


def test_address_in_use_exits_1_naming_the_bind(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        assert main(["storekit.reference.sticky:whoami", "--bind", bind, "--mode", "handoff"]) == 1
    assert f"cannot listen on {bind!r}" in capsys.readouterr().err


@pytest.fixture
def cli_server(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    argv = ["storekit.reference.sticky:whoami", "--workers", "3", "--bind", "127.0.0.1:0", *request.param]
    code = "import sys; from storekit.reference.sticky import main; sys.exit(main(sys.argv[1:]))"
    # The master's ClusterStore directory goes in here, so that a SIGKILLed master leaves none behind.
    tmp = tempfile.mkdtemp(prefix="sk-cli-")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}, "TMPDIR": tmp}
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        found = re.search(r"on http://127\.0\.0\.1:(\d+), 3 workers", banner)
        assert found, banner
        assert (
            "per worker at most 1000 connections, 50 per address; header timeout 10s, idle timeout 60s"
            in banner
        )
        yield proc, int(found.group(1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(tmp, ignore_errors=True)


def worker_pids(port: int, workers: int) -> set[int]:
    """Ask from many addresses until every worker answered (whoami says its pid)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 10
    sources = iter(loopback_sources(200))
    while len(pids) < workers and time.monotonic() < deadline:
        reply = request("127.0.0.1", port, source=next(sources))
        pids.add(int(reply.text.split()[3]))
    assert len(pids) == workers
    return pids


@pytest.mark.parametrize("cli_server", [[], ["--mode", "handoff"], ["--routing", "header"]], indirect=True)
def test_sigterm_stops_master_and_workers(cli_server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = cli_server
    pids = worker_pids(port, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "workers outlived their master")


@pytest.mark.parametrize("cli_server", [[], ["--mode", "handoff"]], indirect=True)
def test_sigkill_of_the_master_leaves_no_worker_behind(cli_server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = cli_server
    pids = worker_pids(port, 3)
    proc.kill()
    proc.wait(10)
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "workers outlived their SIGKILLed master")


@pytest.mark.parametrize("cli_server", [["--seed", "5", "--workers", "3"]], indirect=True)
def test_a_replaced_worker_keeps_its_addresses(cli_server: tuple[subprocess.Popen[str], int]) -> None:
    _, port = cli_server
    sources = loopback_sources(24)
    before = {s: request("127.0.0.1", port, source=s).text.split() for s in sources}
    _, slot, _, pid = before[sources[0]]
    os.kill(int(pid), signal.SIGKILL)

    def replaced() -> bool:
        try:
            return request("127.0.0.1", port, source=sources[0], timeout=2).text.split()[3] != pid
        except OSError:
            return False

    wait_until(replaced, 10, f"slot {slot} was not served by a new worker")
    after = {s: request("127.0.0.1", port, source=s).text.split()[1] for s in sources}
    assert after == {s: words[1] for s, words in before.items()}


def docs_commands() -> list[list[str]]:
    """The `storekit serve ...` lines of docs/sticky.md, as argv for main()."""
    docs = Path(__file__).resolve().parent.parent / "docs" / "sticky.md"
    if not docs.exists():
        return []
    lines = [
        line.strip()
        for block in docs.read_text().split("```sh\n")[1:]
        for line in block.split("```")[0].splitlines()
    ]
    return [shlex.split(line)[2:] for line in lines if line.startswith("storekit serve ")]


@pytest.mark.parametrize("argv", docs_commands(), ids=" ".join)
def test_commands_in_docs_sticky_md_serve(argv: list[str]) -> None:
    argv = [
        ("127.0.0.1:0" if previous == "--bind" else arg)
        for previous, arg in zip(["", *argv[:-1]], argv, strict=True)
    ]
    code = "import sys; from storekit.reference.sticky import main; sys.exit(main(sys.argv[1:]))"
    with subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            found = re.search(r"on http://127\.0\.0\.1:(\d+), ", proc.stderr.readline())
            assert found
            assert request("127.0.0.1", int(found.group(1)), source="127.0.0.9").text.startswith("slot ")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_missing_waitress_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "waitress", None)  # makes `import waitress` raise ImportError
    assert main(["storekit.reference.sticky:whoami"]) == 2
    assert "workers run waitress: pip install 'storekit[server]'" in capsys.readouterr().err
