"""ClusterStore against its peers, on this machine, in one run.

Worker processes (1, 2 and 4) get and set ~1 KB sessions, each on its own
sids, for a fixed time; every operation is timed. The backends:

* ``cluster``: storekit's ClusterStore (storekit.codec's checked JSON, server in this process);
* ``manager``: ``multiprocessing.Manager().dict()`` holding JSON text;
* ``redis``: redis-py against a redis-server this script starts on a free
  loopback port, without persistence;
* ``stash``: gunicorn's ``dirty.stash`` (gunicorn >= 25.1), the table kept
  by the dirty arbiter of a real gunicorn this script starts, holding JSON
  text, reached through gunicorn's ``StashClient``;
* ``raw``: the floor: a Python client and a thread-per-connection Python server
  exchanging the same byte counts over a Unix socket, with no work at all.

The manager and redis peers encode with the standard library's json unless
``--peer-codec storekit`` gives them storekit.codec, ClusterStore's own JSON
work (the contract's checks, and orjson where it is installed), which leaves
only the transports to compare.

Then the resident memory of a cluster server holding 1,000,000 sessions of
200 bytes. ``--write docs/benchmarks.md`` replaces the section that ``--section``
names ("## ClusterStore" unless told otherwise).

    .venv/bin/python benchmarks/bench_cluster.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from storekit.codec import format_expires
from storekit.reference import cluster
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import Requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import paired, write_section
from bench_cluster_peers import (
    BACKENDS,
    CODECS,
    ORDER,
    SESSION,
    SIDS_PER_WORKER,
    Backend,
    Client,
    ctx,
    use_codec,
)

# --- measuring ---


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _own_kernel() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _worker(make: Callable[[], Client], op: str, wid: int, seconds: float, go: Any, out: Any) -> None:
    """Connect and write this worker's sessions, say ready, wait for the go, then
    time every call for ``seconds``; send back the CPU used (all, and the kernel's part)
    and the latencies."""
    get, set_ = make()
    sids = [f"w{wid}-{i:03d}-{'s' * 20}" for i in range(SIDS_PER_WORKER)]
    for sid in sids:
        set_(sid, SESSION)
    call: Callable[[str], Any] = get if op == "get" else (lambda sid: set_(sid, SESSION))
    latencies = array.array("d")
    clock = time.perf_counter
    out.send_bytes(b"ready")
    if not go.wait(60):  # the parent gave up (another worker failed): leave quietly
        return
    cpu, kernel = _own_cpu(), _own_kernel()
    stop = clock() + seconds
    i = 0
    while True:
        began = clock()
        call(sids[i % SIDS_PER_WORKER])
        ended = clock()
        latencies.append(ended - began)
        i += 1
        if ended >= stop:
            break
    cpu, kernel = _own_cpu() - cpu, _own_kernel() - kernel
    out.send_bytes(array.array("d", [cpu, kernel]).tobytes() + latencies.tobytes())
    out.close()


def measure(backend: Backend, op: str, workers: int, seconds: float) -> dict[str, float]:
    """All workers start timing together once every one of them is connected and warm.
    ``own_kernel`` is this process's kernel CPU per operation: the server's, for the backends
    that serve from this process (cluster, raw)."""
    make, server_cpu = backend
    go = ctx.Event()
    pipes, procs = [], []
    try:
        for wid in range(workers):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(make, op, wid, seconds, go, send), daemon=True)
            proc.start()
            send.close()
            pipes.append(receive)
            procs.append(proc)
        for receive in pipes:
            if receive.recv_bytes() != b"ready":
                raise RuntimeError("a worker did not get ready")
        server_before, own_kernel = server_cpu(), _own_kernel()
        go.set()
        samples = array.array("d")
        client_cpu = client_kernel = 0.0
        for receive in pipes:
            data = array.array("d")
            data.frombytes(receive.recv_bytes())
            client_cpu += data[0]
            client_kernel += data[1]
            samples.extend(data[2:])
        server_used, own_kernel = server_cpu() - server_before, _own_kernel() - own_kernel
    except EOFError:  # a worker died: say which and how, rather than "EOFError"
        for proc in procs:
            proc.join(5)
        codes = [proc.exitcode for proc in procs]
        raise RuntimeError(f"a {op} worker failed (exit codes {codes})") from None
    finally:
        go.set()  # nobody waits forever
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    for proc in procs:
        if proc.exitcode != 0:
            raise RuntimeError(f"a {op} worker failed with exit code {proc.exitcode}")
    ordered = sorted(samples)
    count = len(ordered)
    return {
        "ops": count / seconds,
        "p50": ordered[count // 2] * 1e6,
        "p99": ordered[int(count * 0.99)] * 1e6,
        "client_cpu": client_cpu / count * 1e6,
        "client_kernel": client_kernel / count * 1e6,
        "server_cpu": server_used / count * 1e6,
        "own_kernel": own_kernel / count * 1e6,
    }


def memory(count: int, size: int) -> dict[str, float]:
    """RSS of a fresh master holding ``count`` sessions of ``size`` bytes of JSON."""
    script = (
        "import os, sys\nfrom storekit.reference import cluster\ncluster.setup()\n"
        "print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)\nsys.stdin.read()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
    master = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert master.stdout is not None
    path, key = master.stdout.readline().split()
    try:
        address = cluster.Address(path, bytes.fromhex(key))
        store = cluster.ClusterStore(address=address, timeout=60)
        before = _rss(master.pid)
        session = {"cookie": {"expires": format_expires(time.time() + 86_400)}, "data": ""}
        session["data"] = "x" * (size - len(json.dumps(session, separators=(",", ":"))))
        requests = Requests("", None, 1 << 20, time.time)
        conn = store._connect()  # pipelined sets over one connection: the fill takes seconds, not minutes
        batch = 2000
        for first in range(0, count, batch):
            frames = [requests.set(f"{i:032x}", session) for i in range(first, min(first + batch, count))]
            conn.sock.sendall(b"".join(frames))
            expected, got = len(wire.OK_FRAME) * len(frames), 0
            while got < expected:
                got += len(conn.sock.recv(expected - got))
        conn.close()
        assert store.length() == count
        assert wire.json_length(wire.decode_request(requests.set("x", session)).value) == size
        return {"before": before, "after": _rss(master.pid), "count": count, "size": size}
    finally:
        master.kill()
        master.wait()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    return f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


Cell = dict[str, float]


def median_cell(cells: list[Cell]) -> Cell:
    """The round whose ops/s is the median of the rounds'."""
    return sorted(cells, key=lambda cell: cell["ops"])[len(cells) // 2]


def report(
    runs: dict[tuple[str, str, int], list[Cell]], mem: dict[str, float] | None, meta: dict[str, str]
) -> str:
    results = {key: median_cell(cells) for key, cells in runs.items()}
    lines = [
        meta["section"],
        "",
        f"Machine: {meta['machine']}. Load average before/after: {meta['load_before']} / "
        f"{meta['load_after']} (the machine is shared with other work).",
        f"Command: `{meta['command']}`; {meta['seconds']} s per cell and round, {meta['rounds']} rounds.",
        "",
        f"Peers' JSON: {meta['peer_codec']}.",
        "",
        "Each cell is the median (by ops/s) of the rounds, the backends taking turns in every round.",
        "CPU columns: CPU time per operation while timing, of the worker processes and of the server",
        "(the benchmark's process, which runs the cluster and raw servers; the manager process;",
        "redis-server; gunicorn's dirty arbiter). Workers connect and write their sessions first,",
        "then start timing together.",
        "",
        "| backend | op | workers | ops/s (all workers) | p50 µs | p99 µs | client CPU µs/op "
        "| server CPU µs/op |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (backend, op, workers), r in sorted(results.items(), key=lambda item: ORDER.index(item[0][0])):
        lines.append(
            f"| {backend} | {op} | {workers} | {r['ops']:,.0f} | {r['p50']:.0f} | {r['p99']:.0f} "
            f"| {r['client_cpu']:.0f} | {r['server_cpu']:.0f} |"
        )
    lines += [
        "",
        "Against the targets of issues 3 and 15; each ratio is the median of the rounds' ratios",
        "(lowest-highest), the two backends measured back to back in every round:",
        "",
    ]
    for op in ("get", "set"):
        cluster4, cluster1 = runs.get(("cluster", op, 4)), runs.get(("cluster", op, 1))
        peers = (
            ("manager", "Manager().dict()", 1.5),
            ("redis", "redis-py", 2),
            ("stash", "dirty.stash", None),
            ("raw", "the raw round trip", 0.6),
        )
        for peer, name, target in peers:
            other = runs.get((peer, op, 4))
            if cluster4 and other:
                ops = paired(cluster4, other, lambda c, p: c["ops"] / p["ops"])
                cpu = paired(cluster4, other, lambda c, p: _cpu_per_op(p) / _cpu_per_op(c))
                goal = "" if target is None else f" (target >= {target}x)"
                mine, theirs = results["cluster", op, 4], results[peer, op, 4]
                line = (
                    f"- {op}, 4 workers: {ops} times {name}'s throughput{goal}; CPU per "
                    f"operation, clients + server: {_cpu_per_op(mine):.0f} µs against "
                    f"{_cpu_per_op(theirs):.0f} µs (ratio {cpu})"
                )
                if peer == "raw":  # where the difference is: user or kernel time, clients or server
                    line += f"; of which {_split(mine)} against {_split(theirs)}"
                lines.append(line)
        if cluster4:
            lines.append(
                f"- {op}, 4 workers: p99 {results['cluster', op, 4]['p99']:.0f} µs (target < 1000 µs)"
            )
        raw1 = runs.get(("raw", op, 1))
        if cluster1 and raw1:
            ratio = paired(cluster1, raw1, lambda c, r: c["p50"] / r["p50"])
            lines.append(
                f"- {op}, 1 worker: p50 {results['cluster', op, 1]['p50']:.0f} µs, {ratio} times the raw "
                f"round trip's {results['raw', op, 1]['p50']:.0f} µs (target <= 2x)"
            )
    if mem:
        lines += [
            "",
            f"Memory: a fresh master holding {mem['count']:,.0f} live sessions of {mem['size']:.0f} bytes of "
            f"JSON (32-character sids, each with an expiry) has {mem['after']:.0f} MB resident "
            f"({mem['before']:.0f} MB before the sessions, so "
            f"{mem['after'] - mem['before']:.0f} MB for them; target < 400 MB).",
        ]
    return "\n".join(lines) + "\n"


def _cpu_per_op(cell: dict[str, float]) -> float:
    return cell["client_cpu"] + cell["server_cpu"]


def _split(cell: dict[str, float]) -> str:
    """User and kernel CPU per operation, clients then server (a server in this process)."""
    client_user = cell["client_cpu"] - cell["client_kernel"]
    server_user = cell["server_cpu"] - cell["own_kernel"]
    return (
        f"clients {client_user:.0f} user + {cell['client_kernel']:.0f} kernel, "
        f"server {server_user:.0f} + {cell['own_kernel']:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell; the median is reported")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="subset of " + ",".join(BACKENDS))
    parser.add_argument(
        "--sessions", type=int, default=1_000_000, help="sessions for the memory test (0: skip)"
    )
    parser.add_argument(
        "--peer-codec",
        choices=sorted(CODECS),
        default="json",
        help="the JSON the manager and redis peers use",
    )
    parser.add_argument("--section", default="## ClusterStore", help="the heading of the section to write")
    parser.add_argument("--write", type=Path, help="replace the section of this markdown file")
    args = parser.parse_args(argv)
    meta = {
        "machine": machine(),
        "load_before": load(),
        "seconds": f"{args.seconds:g}",
        "rounds": str(args.rounds),
        "peer_codec": {
            "json": "the standard library's json (a prebuilt compact encoder, no checks)",
            "storekit": "storekit.codec, ClusterStore's own (the contract's checks, orjson where installed)",
        }[args.peer_codec],
        "section": args.section,
    }
    use_codec(args.peer_codec)
    meta["command"] = shlex.join(["python", "benchmarks/bench_cluster.py", *sys.argv[1:]])
    runs: dict[tuple[str, str, int], list[Cell]] = {}
    names = args.backends.split(",")
    with ExitStack() as stack:
        backends = {name: stack.enter_context(BACKENDS[name]()) for name in names}
        for op in ("get", "set"):
            for workers in map(int, args.workers.split(",")):
                for _ in range(args.rounds):
                    for name in names:
                        runs.setdefault((name, op, workers), []).append(
                            measure(backends[name], op, workers, args.seconds)
                        )
                for name in names:
                    r = median_cell(runs[name, op, workers])
                    print(f"{name:8} {op} x{workers}: {r['ops']:9,.0f} ops/s  p50 {r['p50']:6.0f} µs  "
                          f"p99 {r['p99']:6.0f} µs  cpu {r['client_cpu']:4.0f}+{r['server_cpu']:4.0f} µs/op",
                          flush=True)  # fmt: skip
    mem = memory(args.sessions, 200) if args.sessions else None
    meta["load_after"] = load()
    text = report(runs, mem, meta)
    print(text)
    if args.write:
        write_section(args.write, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
