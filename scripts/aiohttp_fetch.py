#!/usr/bin/python3
"""Fetch a list of URLs the way many aiohttp users do, as a baseline for
`ringfetch fetch` in scripts/compare.sh.

    /usr/bin/python3 scripts/aiohttp_fetch.py URLS_FILE [CONCURRENCY]

The pattern is deliberately the common one, not the fastest one: an
asyncio.Semaphore bounds concurrency (default 500), and every request opens its
own aiohttp.ClientSession (so its own connector and TCP connection), reads the
whole body, and closes the session. Prints the number of URLs that answered
200 on stdout; failures are summarised on stderr. Exit status 0 even when some
failed: the caller compares the count with the number of URLs.
"""

import asyncio
import collections
import sys

import aiohttp


async def fetch(url, sem, errors):
    async with sem:
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return True
                    errors[f"HTTP {resp.status}"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            errors[type(exc).__name__] += 1
        return False


async def main(path, concurrency):
    with open(path, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    sem = asyncio.Semaphore(concurrency)
    errors = collections.Counter()
    results = await asyncio.gather(*(fetch(u, sem, errors) for u in urls))
    ok = sum(results)
    print(ok)
    if errors:
        summary = ", ".join(f"{k}: {v}" for k, v in errors.most_common())
        print(f"aiohttp_fetch: {len(urls) - ok} of {len(urls)} failed ({summary})",
              file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 500))
