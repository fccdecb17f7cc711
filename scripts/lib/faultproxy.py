#!/usr/bin/env python3
"""A small fault-injecting TCP proxy for scripts/soak.sh.

The kernel here has no netem, so the faults nftables and tbf cannot make come
from here: each accepted connection is forwarded to UPSTREAM, and a fraction of
them is spoiled on the way back to the client, after a random number of
response bytes so the fault lands mid-stream on a keep-alive connection:

  delay     every response chunk held back 20-300 ms (slow server / slow path)
  reset     SO_LINGER 0 and close: the client sees ECONNRESET
  truncate  a clean FIN in the middle of a response (a body cut short)

Everything else is passed through untouched. Counts of each fault go to
--stats as one JSON object, rewritten every second and at exit, so the soak can
report how many faults it injected.

Usage: faultproxy.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
                     --stats FILE [--delay PCT] [--reset PCT] [--truncate PCT]
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct

STATS = {"connections": 0, "delay": 0, "reset": 0, "truncate": 0, "passed": 0, "upstream_failed": 0}


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def write_stats(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATS, f)
    os.replace(tmp, path)  # a reader never sees half a file


async def pump_up(reader, writer):
    """Client to upstream, untouched."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def handle(client_r, client_w, args):
    STATS["connections"] += 1
    try:
        up_r, up_w = await asyncio.open_connection(*args.upstream)
    except OSError:
        STATS["upstream_failed"] += 1
        client_w.close()
        return
    roll = random.uniform(0, 100)
    if roll < args.reset:
        fault = "reset"
    elif roll < args.reset + args.truncate:
        fault = "truncate"
    elif roll < args.reset + args.truncate + args.delay:
        fault = "delay"
    else:
        fault = None
    # Where the fault strikes: somewhere in the first few responses.
    budget = random.randint(1, 16 * 1024)
    up_task = asyncio.ensure_future(pump_up(client_r, up_w))
    struck = False
    try:
        while data := await up_r.read(65536):
            if fault == "delay":
                if not struck:
                    STATS["delay"] += 1
                    struck = True
                await asyncio.sleep(random.uniform(0.02, 0.3))
            elif fault in ("reset", "truncate") and len(data) >= budget:
                client_w.write(data[: budget - 1] if budget > 1 else b"")
                if budget > 1:
                    await client_w.drain()
                STATS[fault] += 1
                struck = True
                sock = client_w.get_extra_info("socket")
                if fault == "reset" and sock is not None:
                    # Linger 0: close sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            elif fault in ("reset", "truncate"):
                budget -= len(data)
            client_w.write(data)
            await client_w.drain()
        if not struck:
            STATS["passed"] += 1
    except (ConnectionError, OSError):
        pass
    finally:
        up_task.cancel()
        for w in (client_w, up_w):
            try:
                w.close()
            except (ConnectionError, OSError, RuntimeError):
                pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=hostport, required=True)
    p.add_argument("--upstream", type=hostport, required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--delay", type=float, default=10)
    p.add_argument("--reset", type=float, default=5)
    p.add_argument("--truncate", type=float, default=5)
    args = p.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args), *args.listen, backlog=1024, reuse_address=True
    )
    print(f"listening on {args.listen[0]}:{args.listen[1]}", flush=True)
    async with server:
        while not stop.is_set():
            write_stats(args.stats)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    write_stats(args.stats)


if __name__ == "__main__":
    asyncio.run(main())
