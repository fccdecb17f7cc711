#!/usr/bin/env python3
"""A small fault-injecting TCP proxy for scripts/soak.sh.

The kernel here has no netem, so the faults nftables and tbf cannot make come
from here: each accepted connection is forwarded to UPSTREAM, and each chunk the
upstream answers with meets one of these faults with its percentage, so faults
keep coming in proportion to the traffic even on long keep-alive connections:

  delay     the chunk held back 20-300 ms (a slow server or path)
  reset     part of the chunk, then SO_LINGER 0 and close: the client sees ECONNRESET
  truncate  part of the chunk, then a clean FIN: a response cut short

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

# "passed" counts chunks; the faults count chunks spoiled.
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
    up_task = asyncio.ensure_future(pump_up(client_r, up_w))
    try:
        while data := await up_r.read(65536):
            roll = random.uniform(0, 100)
            if roll < args.reset + args.truncate:
                fault = "reset" if roll < args.reset else "truncate"
                STATS[fault] += 1
                # Cut anywhere in the chunk, also before its first byte.
                client_w.write(data[: random.randrange(len(data))])
                await client_w.drain()
                sock = client_w.get_extra_info("socket")
                if fault == "reset" and sock is not None:
                    # Linger 0: close sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            if roll < args.reset + args.truncate + args.delay:
                STATS["delay"] += 1
                await asyncio.sleep(random.uniform(0.02, 0.3))
            else:
                STATS["passed"] += 1
            client_w.write(data)
            await client_w.drain()
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
    p.add_argument("--delay", type=float, default=2, help="percent of chunks delayed")
    p.add_argument("--reset", type=float, default=0.5, help="percent of chunks cut by a reset")
    p.add_argument("--truncate", type=float, default=0.5, help="percent of chunks cut by a FIN")
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
