"""The ASGI benchmark still runs (tiny durations; no figures checked)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "bench_asgi.py").exists():
    pytest.skip("benchmarks/ is not in this tree", allow_module_level=True)
pytest.importorskip("uvicorn", reason="the ASGI benchmark runs uvicorn")
pytest.importorskip("wsproto", reason="uvicorn's websockets need wsproto or websockets")
if shutil.which("redis-server") is None:
    pytest.skip("the ASGI benchmark's uvicorn and gunicorn rows need redis-server", allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))

import bench_asgi  # noqa: E402
from loadgen import source_addresses  # noqa: E402

from storekit.reference.sticky import StickyServer  # noqa: E402
from storekit.reference.sticky.bpf import kernel_supported  # noqa: E402

pytestmark = pytest.mark.skipif(
    not kernel_supported(), reason="the benchmark runs kernel mode (SO_REUSEPORT)"
)


def test_websocket_client_counts_echoes_from_many_addresses() -> None:
    with StickyServer(bench_asgi.echo, workers=2, interface="asgi") as server:
        result = bench_asgi.run_ws("127.0.0.1", server.port, connections=4, duration=0.5,
                                   sources=source_addresses(4))  # fmt: skip
    assert result.errors == 0
    assert result.connections == 4
    assert result.requests > 4


def test_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    target = tmp_path / "benchmarks.md"
    heading = "## ASGI, session app and websocket echo"
    target.write_text(f"# Benchmarks\n\n{heading}\n\nold figures\n\n## Other\n\nkept\n")
    argv = ["--duration", "0.2", "--rounds", "1", "--connections", "4", "--write", str(target)]
    assert bench_asgi.main(argv) == 0
    text = target.read_text()
    assert "old figures" not in text
    assert "## Other\n\nkept\n" in text
    assert "| storekit serve ip-hash, kernel, AsyncClusterStore |" in text
    assert "| uvicorn --workers, AsyncRedisStore |" in text
    assert "| ip-hash / round-robin |" in text
    assert "| ip-hash, even split / round-robin |" in text
    assert "The split: ip-hash sends an address to worker" in text
    assert "The websocket rows' 4 connections come from 4 addresses" in text
    assert "| websocket echo: sticky / uvicorn direct |" in text


def test_the_even_seed_splits_the_addresses_evenly() -> None:
    sources = source_addresses(64)
    seed = bench_asgi.even_seed(sources, 2)
    assert bench_asgi.heavier_share(sources, 2, seed) == 0.5
    assert bench_asgi.heavier_share(sources, 3, bench_asgi.even_seed(sources, 3)) == 22 / 64


def test_the_websocket_load_comes_from_each_load_process_s_first_addresses() -> None:
    import argparse

    args = argparse.Namespace(sources=64, connections=5, loadgen_processes=2)
    sources = source_addresses(64)
    assert bench_asgi.ws_used(args) == [sources[0], sources[2], sources[4], sources[1], sources[3]]
