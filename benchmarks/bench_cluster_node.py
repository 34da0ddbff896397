"""ClusterStore against its Node original, strong-cluster-connect-store, in one run.

Four worker processes get, then set, the ~1 KB session of bench_cluster.py, each
on its own 64 sids, one round trip at a time, for a fixed time:

* ``cluster``: storekit's ClusterStore, the server in this process, the workers
  bench_cluster.py's (every call timed);
* ``node``: strong-cluster-connect-store 1.x in a Node cluster master, its four
  workers forked by Node's ``cluster`` module and served over Node's IPC
  channels (benchmarks/node/strong_cluster.js).

The two take turns in every round; each ratio is the median of the rounds'
ratios, with their range. It needs node and npm's express-session and
strong-cluster-connect-store where NODE_PATH (or ~/.cache/storekit-node) finds
them:

    npm install --prefix ~/.cache/storekit-node express-session@1.18 strong-cluster-connect-store@1
    .venv/bin/python benchmarks/bench_cluster_node.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import paired, write_section
from bench_cluster import load, machine, measure
from bench_cluster_peers import SESSION, cluster_backend

SECTION = "## ClusterStore against strong-cluster-connect-store"
SCRIPT = Path(__file__).resolve().parent / "node" / "strong_cluster.js"
WORKERS = 4


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "storekit-node" / "node_modules"
    env["NODE_PATH"] = os.pathsep.join(p for p in (env.get("NODE_PATH"), str(cache)) if p)
    return env


def node_versions(env: dict[str, str]) -> str:
    script = (
        "const v = (m) => require(m + '/package.json').version;"
        "console.log(`node ${process.version}, express-session ${v('express-session')}, "
        "strong-cluster-connect-store ${v('strong-cluster-connect-store')}`)"
    )
    done = subprocess.run(["node", "-e", script], env=env, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise SystemExit(
            "node cannot load express-session and strong-cluster-connect-store: run 'npm install --prefix "
            "~/.cache/storekit-node express-session@1.18 strong-cluster-connect-store@1' "
            f"({done.stderr.strip()[-300:]})"
        )
    return done.stdout.strip()


def measure_node(op: str, seconds: float, session_file: str, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        ["node", str(SCRIPT), op, str(WORKERS), f"{seconds:g}", session_file],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the node benchmark failed: {done.stderr.strip()[-1000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    ops = found["ops"]
    return {
        "ops": ops / found["seconds"],
        "client_cpu": found["client_cpu"] / ops * 1e6,
        "server_cpu": found["server_cpu"] / ops * 1e6,
    }


def report(runs: dict[tuple[str, str], list[dict[str, float]]], meta: dict[str, str]) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {meta['machine']}; {meta['versions']}. Load average before/after: "
        f"{meta['load_before']} / {meta['load_after']} (the machine is shared with other work).",
        f"Command: `{meta['command']}`; {meta['seconds']} s per cell and round, {meta['rounds']} rounds, "
        f"{WORKERS} workers.",
        "",
        "Each cell is the median (by ops/s) of the rounds, the two taking turns in every round. CPU: per",
        "operation, of the workers and of the server (this process for ClusterStore, the Node master",
        "for strong-cluster-connect-store).",
        "",
        "| store | op | ops/s (all workers) | client CPU µs/op | server CPU µs/op |",
        "|---|---|---:|---:|---:|",
    ]
    for (name, op), cells in runs.items():
        cell = sorted(cells, key=lambda c: c["ops"])[len(cells) // 2]
        lines.append(
            f"| {name} | {op} | {cell['ops']:,.0f} | {cell['client_cpu']:.0f} | {cell['server_cpu']:.0f} |"
        )
    lines.append("")
    for op in ("get", "set"):
        ours, theirs = runs.get(("ClusterStore", op)), runs.get(("strong-cluster-connect-store", op))
        if ours and theirs:
            ratio = paired(ours, theirs, lambda a, b: a["ops"] / b["ops"])
            lines.append(
                f"- {op}, {WORKERS} workers: ClusterStore serves {ratio} times the operations per second "
                "of strong-cluster-connect-store (target >= 2x)"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is reported")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of this markdown file")
    args = parser.parse_args(argv)
    env = node_env()
    meta = {
        "machine": machine(),
        "versions": node_versions(env),
        "load_before": load(),
        "seconds": f"{args.seconds:g}",
        "rounds": str(args.rounds),
        "command": shlex.join(["python", "benchmarks/bench_cluster_node.py", *sys.argv[1:]]),
    }
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as session_file, cluster_backend() as backend:
        json.dump(SESSION, session_file)
        session_file.flush()
        for round_ in range(args.rounds):
            for op in ("get", "set"):
                pair = ["ClusterStore", "strong-cluster-connect-store"]
                for name in pair if round_ % 2 == 0 else pair[::-1]:
                    if name == "ClusterStore":
                        cell = measure(backend, op, WORKERS, args.seconds)
                    else:
                        cell = measure_node(op, args.seconds, session_file.name, env)
                    runs.setdefault((name, op), []).append(cell)
                    print(f"{name:30s} {op} x{WORKERS}: {cell['ops']:>9,.0f} ops/s", flush=True)
    meta["load_after"] = load()
    text = report(runs, meta)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
