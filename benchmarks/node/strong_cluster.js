// strong-cluster-connect-store (the Node original of ClusterStore) under load:
// the master serves the sessions over Node's cluster IPC; WORKERS workers each
// set 64 sessions, wait for the master's "go", then get (or set) them one
// round trip at a time for SECONDS and report their count and CPU time.
// Prints one JSON line: {"ops": n, "seconds": s, "client_cpu": s, "server_cpu": s}.
//
//   node strong_cluster.js get|set WORKERS SECONDS SESSION_JSON_FILE
"use strict";
const cluster = require("cluster");
const fs = require("fs");
const session = require("express-session");
const ClusterStore = require("strong-cluster-connect-store")(session);

const [op, workersArg, secondsArg, sessionFile] = process.argv.slice(2);
const WORKERS = Number(workersArg);
const SECONDS = Number(secondsArg);
const SIDS = 64;

function cpuSeconds(usage) {
  return (usage.user + usage.system) / 1e6;
}

if (cluster.isPrimary) {
  ClusterStore.setup();
  const results = [];
  let ready = 0;
  let serverBefore = null;
  for (let w = 0; w < WORKERS; w++) {
    const worker = cluster.fork({ BENCH_WORKER: String(w) });
    worker.on("message", (message) => {
      if (message.type === "bench-ready") {
        ready += 1;
        if (ready === WORKERS) {
          serverBefore = process.cpuUsage();
          for (const id in cluster.workers) cluster.workers[id].send({ type: "bench-go" });
        }
      } else if (message.type === "bench-done") {
        results.push(message);
        if (results.length === WORKERS) {
          const server = cpuSeconds(process.cpuUsage(serverBefore));
          const ops = results.reduce((sum, r) => sum + r.ops, 0);
          const client = results.reduce((sum, r) => sum + r.cpu, 0);
          const seconds = Math.max(...results.map((r) => r.seconds));
          process.stdout.write(JSON.stringify({ ops, seconds, client_cpu: client, server_cpu: server }) + "\n");
          for (const id in cluster.workers) cluster.workers[id].kill();
        }
      }
    });
  }
} else {
  const store = new ClusterStore();
  const data = JSON.parse(fs.readFileSync(sessionFile, "utf8"));
  const me = process.env.BENCH_WORKER;
  const sids = Array.from({ length: SIDS }, (_, i) => `w${me}-${String(i).padStart(3, "0")}-${"s".repeat(20)}`);
  let filled = 0;
  for (const sid of sids) {
    store.set(sid, data, (err) => {
      if (err) throw err;
      filled += 1;
      if (filled === SIDS) process.send({ type: "bench-ready" });
    });
  }
  process.on("message", (message) => {
    if (message.type !== "bench-go") return;
    const cpuBefore = process.cpuUsage();
    const start = process.hrtime.bigint();
    const stop = start + BigInt(Math.round(SECONDS * 1e9));
    let ops = 0;
    const next = () => {
      const now = process.hrtime.bigint();
      if (now >= stop) {
        process.send({
          type: "bench-done",
          ops,
          seconds: Number(now - start) / 1e9,
          cpu: cpuSeconds(process.cpuUsage(cpuBefore)),
        });
        return;
      }
      const sid = sids[ops % SIDS];
      ops += 1;
      if (op === "get") {
        store.get(sid, (err, found) => {
          if (err || !found) throw err || new Error(`no session under ${sid}`);
          next();
        });
      } else {
        store.set(sid, data, (err) => {
          if (err) throw err;
          next();
        });
      }
    };
    next();
  });
}
