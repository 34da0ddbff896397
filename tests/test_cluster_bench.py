"""The ClusterStore benchmark still runs and reports (tiny durations; no figures checked)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if not (BENCHMARKS / "bench_cluster.py").exists():
    pytest.skip("benchmarks/ is not in this tree", allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))

import bench_cluster  # noqa: E402


def test_benchmark_runs_and_writes_its_section(tmp_path: Path) -> None:
    target = tmp_path / "benchmarks.md"
    target.write_text("# Benchmarks\n\n## ClusterStore\n\nold figures\n\n## Other\n\nkept\n")
    argv = [
        "--seconds",
        "0.2",
        "--rounds",
        "1",
        "--workers",
        "1,4",
        "--backends",
        "cluster,manager,stash,raw",
    ]
    argv += ["--sessions", "2000", "--write", str(target)]
    assert bench_cluster.main(argv) == 0
    text = target.read_text()
    assert "old figures" not in text
    assert "## Other\n\nkept\n" in text
    for backend in ("cluster", "manager", "stash", "raw"):
        for op in ("get", "set"):
            assert f"| {backend} | {op} | 4 |" in text
    assert "- set, 4 workers: " in text
    assert " times Manager().dict()'s throughput (target >= 1.5x)" in text
    assert " times dirty.stash's throughput; CPU per operation" in text
    assert " times the raw round trip's throughput (target >= 0.6x)" in text
    assert "- get, 1 worker: p50 " in text
    assert "Memory: a fresh master holding 2,000 live sessions" in text
    assert "Peers' JSON: the standard library's json" in text


def test_peers_can_do_storekits_own_json_work(tmp_path: Path) -> None:
    target = tmp_path / "benchmarks.md"
    argv = ["--seconds", "0.2", "--rounds", "2", "--workers", "1", "--backends", "cluster,manager,raw"]
    argv += [
        "--sessions",
        "0",
        "--peer-codec",
        "storekit",
        "--section",
        "## Same JSON",
        "--write",
        str(target),
    ]
    try:
        assert bench_cluster.main(argv) == 0
    finally:
        bench_cluster.use_codec("json")
    text = target.read_text()
    assert "## Same JSON\n" in text
    assert "Peers' JSON: storekit.codec" in text
    assert "| manager | set | 1 |" in text
    assert "- set, 1 worker: p50 " in text


def test_a_worker_that_fails_before_it_is_ready_fails_the_benchmark_without_a_hang() -> None:
    def make() -> bench_cluster.Client:
        raise OSError("no server here")

    with pytest.raises(RuntimeError, match="get worker failed"):
        bench_cluster.measure((make, lambda: 0.0), "get", 2, 0.1)


def test_the_node_original_runs_beside_clusterstore(tmp_path: Path) -> None:
    import bench_cluster_node

    if shutil.which("node") is None:
        pytest.skip("node is not installed: apt-get install nodejs npm")
    env = bench_cluster_node.node_env()
    loads = subprocess.run(
        ["node", "-e", "require('express-session'); require('strong-cluster-connect-store')"],
        env=env,
        capture_output=True,
        timeout=30,
    )
    if loads.returncode != 0:
        pytest.skip(
            "strong-cluster-connect-store is not installed for node: run 'npm install --prefix "
            "~/.cache/storekit-node express-session@1.18 strong-cluster-connect-store@1'"
        )
    target = tmp_path / "benchmarks.md"
    assert bench_cluster_node.main(["--seconds", "0.3", "--rounds", "1", "--write", str(target)]) == 0
    text = target.read_text()
    assert "## ClusterStore against strong-cluster-connect-store\n" in text
    for store in ("ClusterStore", "strong-cluster-connect-store"):
        for op in ("get", "set"):
            assert f"| {store} | {op} | " in text
    assert "- set, 4 workers: ClusterStore serves " in text
    assert "strong-cluster-connect-store 1." in text
