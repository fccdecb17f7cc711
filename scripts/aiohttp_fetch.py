#!/usr/bin/python3
"""Fetch a list of URLs the way many aiohttp users do, as a baseline for
`ringfetch fetch` in scripts/compare.sh.

    /usr/bin/python3 scripts/aiohttp_fetch.py URLS_FILE [CONCURRENCY [shared]]

The pattern is deliberately the common one, not the fastest one: an
asyncio.Semaphore bounds concurrency (default 500), and every request opens its
own aiohttp.ClientSession (so its own connector and TCP connection), reads the
whole body, and closes the session. With `shared`, the one the aiohttp docs
recommend instead: one ClientSession for the whole run, whose connector keeps
up to CONCURRENCY connections alive and reuses them. Prints the number of URLs
that answered 200 on stdout; failures are summarised on stderr. Exit status 0
even when some failed: the caller compares the count with the number of URLs.
"""

import asyncio
import collections
import sys

import aiohttp


async def get(session, url, errors):
    async with session.get(url) as resp:
        await resp.read()
        if resp.status == 200:
            return True
        errors[f"HTTP {resp.status}"] += 1
        return False


async def fetch(url, sem, errors, session):
    """GETs url with `session`, or with a session of its own when it is None."""
    async with sem:
        try:
            if session is not None:
                return await get(session, url, errors)
            async with aiohttp.ClientSession() as session:
                return await get(session, url, errors)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            errors[type(exc).__name__] += 1
        return False


async def main(path, concurrency, shared):
    with open(path, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    sem = asyncio.Semaphore(concurrency)
    errors = collections.Counter()
    if shared:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            results = await asyncio.gather(*(fetch(u, sem, errors, session) for u in urls))
    else:
        results = await asyncio.gather(*(fetch(u, sem, errors, None) for u in urls))
    ok = sum(results)
    print(ok)
    if errors:
        summary = ", ".join(f"{k}: {v}" for k, v in errors.most_common())
        print(f"aiohttp_fetch: {len(urls) - ok} of {len(urls)} failed ({summary})",
              file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4) or (len(sys.argv) == 4 and sys.argv[3] != "shared"):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) >= 3 else 500,
                     len(sys.argv) == 4))
