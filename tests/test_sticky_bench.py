"""The sticky benchmark and its load generator still run (tiny durations; no figures checked)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "bench_sticky.py").exists():
    pytest.skip("benchmarks/ is not in this tree", allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))

import bench_sticky  # noqa: E402
from loadgen import run_load, run_load_parallel, source_addresses  # noqa: E402

from storekit.reference.sticky import StickyServer, whoami  # noqa: E402


def test_load_generator_counts_answers_with_and_without_keep_alive() -> None:
    with StickyServer(whoami, workers=2) as server:
        result = run_load("127.0.0.1", server.port, connections=8, duration=0.5, sources=source_addresses(8))
        assert result.requests > 0
        assert result.errors == 0
        assert result.connections == 8
        closing = run_load_parallel(
            "127.0.0.1", server.port, processes=2, connections=4, duration=0.5, sources=source_addresses(8),
            keepalive=False,
        )  # fmt: skip
        assert closing.errors == 0
        assert closing.connections >= closing.requests > 4


def test_source_addresses_are_distinct_loopback_addresses() -> None:
    addresses = source_addresses(300)
    assert len(set(addresses)) == 300
    assert addresses[0] == "127.0.0.1"
    assert addresses[255] == "127.0.1.0"


def test_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    target = tmp_path / "benchmarks.md"
    target.write_text("# Benchmarks\n\n## Sticky server\n\nold figures\n\n## Other\n\nkept\n")
    argv = ["--duration", "0.2", "--rounds", "1", "--connections", "4", "--write", str(target)]
    assert bench_sticky.main(argv) == 0
    text = target.read_text()
    assert "old figures" not in text
    assert "## Other\n\nkept\n" in text
    assert "| sticky ip-hash, kernel |" in text or "| sticky ip-hash, handoff |" in text
    assert "| ip-hash kernel / round-robin kernel |" in text
