#!/usr/bin/python3
"""Helpers for scripts/compare.sh (kept in Python because medians, JSON and
float formatting are painful in bash; /usr/bin/python3 is needed for the
aiohttp baseline anyway).

    compare_report.py jsonfield FILE KEY   print KEY of the JSON summary in FILE
    compare_report.py ringfetch FILE       print requests, then a note line, from a
                                           `ringfetch --json` summary
    compare_report.py oha FILE             print 2xx responses, then a note line, from
                                           `oha --output-format json`
    compare_report.py table RESULTS.tsv    print the Markdown table and ratios

RESULTS.tsv has one line per client run, tab-separated:
    scenario  scenario_label  client  client_label  run  requests  expected
    elapsed_s  user_s  sys_s  maxrss_kib  nginx_requests  inflight  note  server_cpu_s
`expected` is the number of requests the run must complete (fetch tests) or 0
(duration tests); `nginx_requests` is the stub_status delta or empty;
`inflight` is how many requests a duration test may legitimately leave
unanswered when it stops (connections x pipeline depth); `server_cpu_s` (may
be absent) is the CPU time the server's processes used over the run, for the
server scenarios (h1, h16), which get a table of their own.
"""

import json
import statistics
import sys

COLUMNS = ("scenario scenario_label client client_label run requests expected "
           "elapsed user sys rss nginx inflight note server_cpu").split()


def load_json(path, key):
    """The client may print log lines around its JSON: take the whole output
    if it parses, else the last line that is a JSON object having KEY."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    candidates = [text] + [ln for ln in reversed(text.splitlines())
                           if ln.strip().startswith("{")]
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if isinstance(obj, dict) and key in obj:
            return obj
    return None


def jsonfield(path, key):
    obj = load_json(path, key)
    if obj is not None:  # else print nothing: the caller reports it
        val = obj[key]
        print(json.dumps(val) if isinstance(val, (dict, list)) else val)


def ringfetch_summary(path):
    """`requests` is what ringfetch counted (responses received in full); the
    note flags errors, non-200 statuses and re-sent requests, which would make
    nginx's count differ from it."""
    obj = load_json(path, "requests")
    if obj is None:
        print("\n⚠ no JSON summary in ringfetch's output")
        return
    notes = []
    errors = obj.get("errors") or {}
    if isinstance(errors, dict) and sum(errors.values()):
        notes.append("⚠ ringfetch errors: " +
                     ", ".join(f"{k} {v}" for k, v in errors.items()))
    elif isinstance(errors, (int, float)) and errors:
        notes.append(f"⚠ ringfetch errors: {errors}")
    status = obj.get("status") or {}
    other = {k: v for k, v in status.items() if k != "200" and v}
    if other:
        notes.append("⚠ non-200: " + ", ".join(f"{k}: {v}" for k, v in other.items()))
    for k in ("retries", "resent"):
        if obj.get(k):
            notes.append(f"{k}: {obj[k]}")
    print(int(obj["requests"]))
    print("; ".join(notes))


def oha_summary(path):
    """oha counts every response; only 2xx are comparable with the other clients' counts. Requests
    cut off at the deadline are errors to oha but not to the others: they are left out silently."""
    obj = load_json(path, "statusCodeDistribution")
    if obj is None:
        print("\n⚠ no JSON in oha's output")
        return
    codes = obj.get("statusCodeDistribution") or {}
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    notes = []
    other = {c: n for c, n in codes.items() if not str(c).startswith("2")}
    if other:
        notes.append(f"⚠ non-2xx: {other}")
    errors = {e: n for e, n in (obj.get("errorDistribution") or {}).items()
              if "deadline" not in e}
    if errors:
        notes.append(f"⚠ errors: {errors}")
    print(ok)
    print("; ".join(notes))


def fnum(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(x, digits):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            parts += [""] * (len(COLUMNS) - len(parts))
            r = dict(zip(COLUMNS, parts))
            for k in ("requests", "expected", "elapsed", "user", "sys", "rss",
                      "nginx", "inflight", "server_cpu"):
                r[k] = fnum(r[k])
            req = r["requests"]
            cpu = (r["user"] or 0) + (r["sys"] or 0) if r["user"] is not None else None
            r["us_per_req"] = cpu * 1e6 / req if req and cpu is not None else None
            r["rps"] = req / r["elapsed"] if req and r["elapsed"] else None
            r["per_core"] = req / r["server_cpu"] if req and r["server_cpu"] else None
            r["server_us"] = r["server_cpu"] * 1e6 / req if req and r["server_cpu"] else None
            r["server_busy"] = (100 * r["server_cpu"] / r["elapsed"]
                                if r["server_cpu"] and r["elapsed"] else None)
            rows.append(r)
    return rows


def checks(r):
    """Warnings for one run: incomplete fetches, server/client disagreement."""
    out = []
    req, exp, ngx = r["requests"], r["expected"], r["nginx"]
    if req is None:
        out.append("⚠ no request count")
        return out
    if exp:
        if req != exp:
            out.append(f"⚠ only {req:.0f}/{exp:.0f} URLs got 200")
        if ngx is not None and ngx != exp:
            out.append(f"⚠ nginx counted {ngx:.0f} requests for {exp:.0f} URLs")
    elif ngx is not None:
        slack = r["inflight"] or 0
        if not req <= ngx <= req + slack:
            out.append(f"⚠ nginx counted {ngx:.0f}, client {req:.0f} "
                       f"(allowed in flight: {slack:.0f})")
    return out


def is_server_scenario(scen):
    """(h1), (h16): servers compared by the CPU they spend, in a table of their own."""
    return scen.startswith("h")


def run_notes(rs):
    """Each run's warnings and notes; one shared by all runs shows once."""
    notes = {}  # text -> runs it happened in
    for r in rs:
        for text in checks(r) + ([r["note"]] if r["note"] else []):
            notes.setdefault(text, []).append(r["run"])
    return "; ".join(
        text if len(rs) == 1 else
        f"{text} (run{'s' if len(runs) > 1 else ''} {','.join(runs)})"
        for text, runs in notes.items()).replace("|", "/")


def table(path):
    rows = load(path)
    groups = {}  # (scenario, client) -> rows, in first-seen order
    labels = {}
    server_groups = {}
    for r in rows:
        into = server_groups if is_server_scenario(r["scenario"]) else groups
        into.setdefault((r["scenario"], r["client"]), []).append(r)
        labels[r["scenario"]] = r["scenario_label"]

    if groups:
        client_table(groups, labels)
    if server_groups:
        if groups:
            print()
        server_table(server_groups, labels)


def ratios_of(summary):
    """Prints the ratios heading; returns ratio(a, b, idx): summary[a][idx] / summary[b][idx], 2
    decimals, "n/a" when either row or figure is missing."""
    def ratio(a, b, idx):
        x, y = summary.get(a), summary.get(b)
        if not x or not y or x[idx] is None or not y[idx]:
            return "n/a"
        return f"{x[idx] / y[idx]:.2f}"

    print()
    print("Ratios (medians):")
    print()
    return ratio


def client_table(groups, labels):
    # Server CPU (when measured, as in (g)) says whether a row's rate is the client's or the server's:
    # a server near 100% of its core bounds the rate, whatever the client could do.
    print("| scenario | client | req/s | µs/req (client CPU) | user s | sys s "
          "| max RSS MiB | runs µs/req | nginx reqs | server CPU % (µs/resp) | notes |")
    print("|---|---|--:|--:|--:|--:|--:|---|--:|--:|---|")
    summary = {}
    for (scen, client), rs in groups.items():
        rps = median([r["rps"] for r in rs])
        us = median([r["us_per_req"] for r in rs])
        server_us = median([r["server_us"] for r in rs])
        summary[(scen, client)] = (rps, us, server_us)
        busy = median([r["server_busy"] for r in rs])
        server = f"{fmt(busy, 0)} ({fmt(server_us, 2)})" if busy is not None else ""
        user = median([r["user"] for r in rs])
        sys_ = median([r["sys"] for r in rs])
        rss = median([r["rss"] / 1024 if r["rss"] is not None else None for r in rs])
        runs = ", ".join(fmt(r["us_per_req"], 2) for r in rs)
        ngx = median([r["nginx"] for r in rs])
        note_str = run_notes(rs)
        print(f"| {labels[scen]} | {rs[0]['client_label']} | {fmt(rps, 0)} | {fmt(us, 2)} "
              f"| {fmt(user, 2)} | {fmt(sys_, 2)} | {fmt(rss, 1)} | {runs} "
              f"| {fmt(ngx, 0)} | {server} | {note_str} |")

    ratio = ratios_of(summary)
    if not any(c.startswith(("ringfetch", "fetch-", "bench-")) for _, c in summary):
        print("- none: no ringfetch rows (RINGFETCH=none)")
    for scen in ("a", "b", "d", "e"):
        if (scen, "ringfetch") in summary:
            oha = ""
            if (scen, "oha") in summary:
                oha = f"ringfetch / oha = {ratio((scen, 'ringfetch'), (scen, 'oha'), 1)}; "
            print(f"- {labels[scen]}: ringfetch / wrk µs per request = "
                  f"**{ratio((scen, 'ringfetch'), (scen, 'wrk'), 1)}** "
                  f"(ringfetch / h2load = {ratio((scen, 'ringfetch'), (scen, 'h2load'), 1)}; {oha}"
                  "below 1 means ringfetch uses less CPU per request)")
        if (scen, "floor") in summary:
            print(f"- {labels[scen]}: data-path floor / wrk µs per request = "
                  f"**{ratio((scen, 'floor'), (scen, 'wrk'), 1)}**; ringfetch / floor = "
                  f"**{ratio((scen, 'ringfetch'), (scen, 'floor'), 1)}** (what the engine adds over "
                  "tokio-uring's TcpStream)")
        if (scen, "ringfetch-direct") in summary:
            print(f"- {labels[scen]}: ringfetch --transport direct / wrk µs per request = "
                  f"**{ratio((scen, 'ringfetch-direct'), (scen, 'wrk'), 1)}**; "
                  f"direct / tcp transport = "
                  f"**{ratio((scen, 'ringfetch-direct'), (scen, 'ringfetch'), 1)}**")
    for client in ("ringfetch", "ringfetch-p16"):
        if ("c", client) in summary:
            lab = groups[("c", client)][0]["client_label"]
            print(f"- {labels['c']}: {lab} req/s / aiohttp req/s = "
                  f"**{ratio(('c', client), ('c', 'aiohttp'), 0)}** "
                  f"(vs curl: {ratio(('c', client), ('c', 'curl'), 0)})")
    if ("f", "ringfetch") in summary:
        print(f"- {labels['f']}: handshakes/s resumed / full = "
              f"**{ratio(('f', 'ringfetch'), ('f', 'ringfetch-full'), 0)}**; "
              f"client µs per connection resumed / full = "
              f"{ratio(('f', 'ringfetch'), ('f', 'ringfetch-full'), 1)} "
              f"(ringfetch resumed / wrk µs = {ratio(('f', 'ringfetch'), ('f', 'wrk'), 1)})")
    # (g): URLs/s of fetch against bench's req/s on one URL at the same depth (target >= 0.90), then
    # against curl and aiohttp, whose rows may have fetched fewer URLs: rates compare per URL.
    for client in [c for s, c in summary if s == "g" and c.startswith("fetch-")]:
        depth = client.rsplit("-p", 1)[1]
        lab = groups[("g", client)][0]["client_label"]
        print(f"- {labels['g']}: {lab}: URLs/s / bench req/s at -p {depth} = "
              f"**{ratio(('g', client), ('g', f'bench-p{depth}'), 0)}** (target ≥ 0.90); "
              f"µs per URL / bench µs per request = "
              f"{ratio(('g', client), ('g', f'bench-p{depth}'), 1)}, "
              f"server CPU per response / bench's = "
              f"{ratio(('g', client), ('g', f'bench-p{depth}'), 2)}; "
              f"URLs/s / aiohttp = **{ratio(('g', client), ('g', 'aiohttp'), 0)}** (target ≥ 50), "
              f"/ aiohttp one session = {ratio(('g', client), ('g', 'aiohttp-shared'), 0)}, "
              f"/ curl = **{ratio(('g', client), ('g', 'curl'), 0)}** (target ≥ 4); "
              f"client CPU per URL, aiohttp / this = {ratio(('g', 'aiohttp'), ('g', client), 1)}, "
              f"aiohttp one session / this = {ratio(('g', 'aiohttp-shared'), ('g', client), 1)}, "
              f"curl / this = {ratio(('g', 'curl'), ('g', client), 1)}")


def server_table(groups, labels):
    """(h): responses/s and responses per second of server CPU, the same client for every server."""
    print("| scenario | server ← client | responses/s | responses per server CPU s "
          "| server CPU s | client µs/req | runs (per server CPU s) | nginx reqs | notes |")
    print("|---|---|--:|--:|--:|--:|---|--:|---|")
    summary = {}
    for (scen, client), rs in groups.items():
        rps = median([r["rps"] for r in rs])
        per_core = median([r["per_core"] for r in rs])
        summary[(scen, client)] = (rps, per_core)
        cpu = median([r["server_cpu"] for r in rs])
        us = median([r["us_per_req"] for r in rs])
        runs = ", ".join(fmt(r["per_core"], 0) for r in rs)
        notes = run_notes(rs)
        if any(r["server_cpu"] is None for r in rs):
            notes = "; ".join(filter(None, [notes, "⚠ no server CPU time"]))
        print(f"| {labels[scen]} | {rs[0]['client_label']} | {fmt(rps, 0)} | {fmt(per_core, 0)} "
              f"| {fmt(cpu, 2)} | {fmt(us, 2)} | {runs} | {fmt(median([r['nginx'] for r in rs]), 0)} "
              f"| {notes} |")

    ratio = ratios_of(summary)
    for scen in dict.fromkeys(s for s, _ in summary):
        for client in ("serve", "serve-direct"):
            if (scen, client) in summary:
                lab = groups[(scen, client)][0]["client_label"].split(" ←")[0]
                print(f"- {labels[scen]}: {lab} / nginx responses per server CPU second = "
                      f"**{ratio((scen, client), (scen, 'nginx'), 1)}** (above 1: serve spends less "
                      f"CPU per response); responses/s = {ratio((scen, client), (scen, 'nginx'), 0)}")


def main(argv):
    if len(argv) == 4 and argv[1] == "jsonfield":
        jsonfield(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "ringfetch":
        ringfetch_summary(argv[2])
    elif len(argv) == 3 and argv[1] == "oha":
        oha_summary(argv[2])
    elif len(argv) == 3 and argv[1] == "table":
        table(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
