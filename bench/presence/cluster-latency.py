#!/usr/bin/env python3
"""Join and leave latency of presence across two Herald nodes (BENCHMARKS.md, issue 15).

Starts its own nats-server and two release Herald nodes sharing it, a watcher on node B that
asks for presence events, then N times: a client connects to node A and subscribes (the join),
then closes (the leave). Reports how long after A's subscribe_success the join reached B's
watcher, and how long after the close the leave did, as p50/p90/p99/max.

    pip install websockets
    python3 bench/presence/cluster-latency.py [--bin target/release/herald] [--n 300]
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import websockets

KEY = "da2-presencelatency00000000"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def node_config(dir, port, nats_port, name):
    path = os.path.join(dir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(
            f"""listen = "127.0.0.1:{port}"
data_dir = "{dir}/{name}-data"

[[namespaces]]
name = "room"
presence = {{}}

[[auth.api_keys]]
key = "{KEY}"

[cluster]
nats_url = "nats://127.0.0.1:{nats_port}"
subject_prefix = "latency"
node_name = "{name}"

[admission]
max_connects_per_address_per_second = 1000000
"""
        )
    return path


async def connect(port):
    header = base64.urlsafe_b64encode(
        json.dumps({"host": f"127.0.0.1:{port}", "x-api-key": KEY}).encode()
    ).decode().rstrip("=")
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/event/realtime",
        subprotocols=["aws-appsync-event-ws", f"header-{header}"],
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    while json.loads(await ws.recv())["type"] != "connection_ack":
        pass
    return ws


async def subscribe(ws, port, sid, channel, presence):
    await ws.send(
        json.dumps(
            {
                "type": "subscribe",
                "id": sid,
                "channel": channel,
                "presence": presence,
                "authorization": {"x-api-key": KEY, "host": f"127.0.0.1:{port}"},
            }
        )
    )
    while True:
        m = json.loads(await ws.recv())
        if m["type"] in ("subscribe_success", "subscribe_error"):
            assert m["type"] == "subscribe_success", m
            return


def summary(name, xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return (
        f"{name}: n={len(xs)} p50 {q(0.5) * 1000:.2f} ms  p90 {q(0.9) * 1000:.2f} ms  "
        f"p99 {q(0.99) * 1000:.2f} ms  max {xs[-1] * 1000:.2f} ms  mean {statistics.mean(xs) * 1000:.2f} ms"
    )


async def measure(a, b, n):
    watcher = await connect(b)
    await subscribe(watcher, b, "w", "/room/lobby", {"events": True})
    events = asyncio.Queue()

    async def read():
        async for raw in watcher:
            m = json.loads(raw)
            if m.get("type") == "data" and m.get("presence"):
                ev = json.loads(m["event"])
                await events.put((time.perf_counter(), m["presence"], ev["member"]["connectionId"]))

    reader = asyncio.create_task(read())
    # The watcher's own join.
    await asyncio.wait_for(events.get(), 10)
    joins, leaves = [], []
    for _ in range(n):
        ws = await connect(a)
        await subscribe(ws, a, "s", "/room/lobby", {})
        subscribed = time.perf_counter()
        t, kind, _ = await asyncio.wait_for(events.get(), 10)
        assert kind == "join", kind
        joins.append(t - subscribed)
        closed = time.perf_counter()
        await ws.close()
        t, kind, _ = await asyncio.wait_for(events.get(), 10)
        assert kind == "leave", kind
        leaves.append(t - closed)
    reader.cancel()
    await watcher.close()
    return joins, leaves


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/herald")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="presence-latency-")
    procs = []
    try:
        nats_port = free_port()
        procs.append(
            subprocess.Popen(
                ["nats-server", "-a", "127.0.0.1", "-p", str(nats_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_port(nats_port)
        ports = []
        for name in ("a", "b"):
            port = free_port()
            conf = node_config(work, port, nats_port, name)
            log = open(os.path.join(work, f"{name}.log"), "w")
            procs.append(subprocess.Popen([args.bin, "serve", "--config", conf], stdout=log, stderr=log))
            wait_port(port)
            ports.append(port)
        joins, leaves = asyncio.run(measure(ports[0], ports[1], args.n))
        print(summary("join on A -> watcher on B", joins))
        print(summary("close on A -> leave at watcher on B", leaves))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
