"""ClusterStore with persistence: what each fsync policy costs, and how long a restart takes.

Four worker processes set ~1 KB sessions (bench_cluster.py's workers and
timing) against a master without persistence and with
``setup(persist=..., fsync=...)`` for "no", "everysec" and "always", the four
taking turns in every round, each round on a fresh directory; the ratios to
the master without persistence are the medians of the rounds' ratios, with
their range.

Then the restart: a master subprocess is filled with ``--sessions`` sessions
of 200 bytes of JSON (pipelined sets, fsync "no"), SIGKILLed, and a new
master started on the same directory and address; the time from starting it
to its first answered ``get`` is the recovery time. Once with the whole
history in the log (compaction off), once after compaction (a snapshot and
the log since).

    .venv/bin/python benchmarks/bench_cluster_persist.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storekit.codec import format_expires
from storekit.reference import cluster
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import Requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import paired, write_section
from bench_cluster import Cell, _own_cpu, load, machine, measure, median_cell
from bench_cluster_peers import Backend, Client

POLICIES = ("memory", "no", "everysec", "always")  # "memory": no persistence
SECTION = "## ClusterStore persistence"


@contextmanager
def persisted_backend(policy: str) -> Iterator[Backend]:
    """A master in this process, persisting into a fresh directory unless ``policy`` is "memory"."""
    directory = tempfile.mkdtemp(prefix="storekit-persist-bench-")
    try:
        if policy == "memory":
            cluster.setup()
        else:
            cluster.setup(persist=os.path.join(directory, "data"), fsync=policy)

        def client() -> Client:
            store = cluster.ClusterStore()
            return store.get, store.set

        yield client, _own_cpu
    finally:
        cluster.shutdown()
        shutil.rmtree(directory, ignore_errors=True)


MASTER = """
import os, sys
from storekit.reference import cluster
from storekit.reference.cluster import persist
persist.COMPACT_MIN_BYTES = int(sys.argv[2])
cluster.setup(persist=sys.argv[1], fsync="no")
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.read()
"""


def _master(
    env: dict[str, str], directory: str, compact: int
) -> tuple[subprocess.Popen[str], cluster.Address]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MASTER, directory, str(compact)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    path, key = proc.stdout.readline().split()
    return proc, cluster.Address(path, bytes.fromhex(key))


def _fill(address: cluster.Address, count: int, size: int) -> None:
    store = cluster.ClusterStore(address=address, timeout=60)
    session = {"cookie": {"expires": format_expires(time.time() + 86_400)}, "data": ""}
    session["data"] = "x" * (size - len(json.dumps(session, separators=(",", ":"))))
    requests = Requests("", None, 1 << 20, time.time)
    conn = store._connect()  # pipelined sets over one connection
    batch = 2000
    for first in range(0, count, batch):
        frames = [requests.set(f"{i:032x}", session) for i in range(first, min(first + batch, count))]
        conn.sock.sendall(b"".join(frames))
        expected, got = len(wire.OK_FRAME) * len(frames), 0
        while got < expected:
            got += len(conn.sock.recv(expected - got))
    conn.close()


def recovery(count: int, size: int, compact: bool) -> dict[str, float]:
    """Seconds from starting a master on a directory of ``count`` sessions to its first answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
    work = tempfile.mkdtemp(prefix="storekit-persist-bench-")
    directory = os.path.join(work, "data")
    threshold = 1 << 20 if compact else 1 << 62
    first, address = _master(env, directory, threshold)
    try:
        _fill(address, count, size)
        store = cluster.ClusterStore(address=address, timeout=60)
        assert store.length() == count
        if compact:  # let the compaction under way finish: one log left beside the snapshot
            deadline = time.monotonic() + 120
            while not _compacted(directory):
                if time.monotonic() > deadline:
                    raise RuntimeError("the compaction did not finish in 120 s")
                time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        files = {name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)}
        restart_env = {**env, cluster.ENV_SOCKET: address.path, cluster.ENV_KEY: address.secret.hex()}
        started = time.monotonic()
        second, _ = _master(restart_env, directory, threshold)
        try:
            got = cluster.ClusterStore(address=address, timeout=60).get(f"{count - 1:032x}")
            elapsed = time.monotonic() - started
            assert got is not None
            assert store.length() == count
        finally:
            second.kill()
            second.wait()
        snapshot = files.get("snapshot", 0)
        logs = sum(size for name, size in files.items() if name.startswith("log."))
        return {"seconds": elapsed, "snapshot_mb": snapshot / 1e6, "log_mb": logs / 1e6, "count": count}
    finally:
        first.kill()
        first.wait()
        shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _compacted(directory: str) -> bool:
    names = os.listdir(directory)
    logs = [name for name in names if name.startswith("log.")]
    return "snapshot" in names and "snapshot.tmp" not in names and len(logs) == 1


def report(runs: dict[str, list[Cell]], restarts: list[dict[str, float]], meta: dict[str, str]) -> str:
    results = {policy: median_cell(cells) for policy, cells in runs.items()}
    lines = [
        SECTION,
        "",
        f"Machine: {meta['machine']}. Load average before/after: {meta['load_before']} / "
        f"{meta['load_after']} (the machine is shared with other work).",
        f"Command: `{meta['command']}`; {meta['seconds']} s per cell and round, {meta['rounds']} rounds, "
        f"{meta['workers']} worker processes setting ~1 KB sessions, each round on a fresh directory "
        "(on the temporary directory's file system).",
        "",
        "Each cell is the median (by ops/s) of the rounds, the four masters taking turns in every round.",
        "",
        "| persistence | sets/s (all workers) | p50 µs | p99 µs | server CPU µs/op "
        "| ops/s vs none | p99 vs none |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = runs.get("memory")
    for policy in POLICIES:
        if policy not in results:
            continue
        r = results[policy]
        name = "none" if policy == "memory" else f'fsync="{policy}"'
        if base and policy != "memory":
            ops = paired(runs[policy], base, lambda a, b: a["ops"] / b["ops"])
            p99 = paired(runs[policy], base, lambda a, b: a["p99"] / b["p99"])
        else:
            ops = p99 = "1"
        lines.append(
            f"| {name} | {r['ops']:,.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['server_cpu']:.0f} "
            f"| {ops} | {p99} |"
        )
    if restarts:
        lines += [
            "",
            "Restart: a master holding the sessions below is SIGKILLed and a new one started on its",
            "directory; the time from starting it (a fresh Python process) to its first answered get:",
            "",
            "| sessions | on disk | snapshot MB | log MB | recovery s |",
            "|---:|---|---:|---:|---:|",
        ]
        for r in restarts:
            kind = "snapshot + log" if r["snapshot_mb"] else "log only"
            lines.append(
                f"| {r['count']:,.0f} | {kind} | {r['snapshot_mb']:.0f} | {r['log_mb']:.0f} "
                f"| {r['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--policies", default=",".join(POLICIES), help="subset of " + ",".join(POLICIES))
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions for the restart (0: skip)")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of this markdown file")
    args = parser.parse_args(argv)
    meta = {
        "machine": machine(),
        "load_before": load(),
        "seconds": f"{args.seconds:g}",
        "rounds": str(args.rounds),
        "workers": str(args.workers),
        "command": shlex.join(["python", "benchmarks/bench_cluster_persist.py", *sys.argv[1:]]),
    }
    for name in (cluster.ENV_SOCKET, cluster.ENV_KEY):
        os.environ.pop(name, None)
    policies = args.policies.split(",")
    runs: dict[str, list[Cell]] = {}
    for _ in range(args.rounds):
        for policy in policies:
            with persisted_backend(policy) as backend:
                runs.setdefault(policy, []).append(measure(backend, "set", args.workers, args.seconds))
    for policy in policies:
        r = median_cell(runs[policy])
        print(f"{policy:8} set x{args.workers}: {r['ops']:9,.0f} ops/s  p50 {r['p50']:6.0f} µs  "
              f"p99 {r['p99']:6.0f} µs  server cpu {r['server_cpu']:4.0f} µs/op", flush=True)  # fmt: skip
    restarts: list[dict[str, float]] = []
    if args.sessions:
        for compact in (False, True):
            restarts.append(recovery(args.sessions, 200, compact))
            print(f"restart of {args.sessions:,} sessions: {restarts[-1]}", flush=True)
    meta["load_after"] = load()
    text = report(runs, restarts, meta)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
