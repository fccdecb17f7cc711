#!/usr/bin/env python3
"""URL lists, document roots and the fetch invariant for scripts/soak.sh.

  soak_check.py files DIR NFILES
      Writes DIR/f/1 .. DIR/f/NFILES, each with content of its own (expected_file),
      so a body saved for the wrong URL, or cut short, cannot pass for the right one.
  soak_check.py list N BASE...
      Prints N URLs, URL i taken from BASE[i % len(BASE)]. A BASE ending in /f/ gets a
      file number (1 + i % NFILES from $SOAK_NFILES); any other BASE gets /s/<i>,
      which the built-in server answers with its pattern.
  soak_check.py check LIST RESULTS SAVE_DIR BODY_SIZE
      The fetch invariant: exactly one well-formed line per index 0..N-1, its url the
      list's; every 200 saved under SAVE_DIR byte for byte as the server sent it.
      Prints figures and PASS/FAIL detail lines; exit 0 only when everything held.
"""

import json
import os
import sys


def expected_file(k):
    # Distinct per file and of varying length (37 .. ~1 KB), so neither a swap nor a cut
    # body can match.
    line = f"ringfetch soak file {k}\n".encode()
    return line * (1 + k % 40)


def expected_serve(body_size):
    # The built-in serve's body: the repeating "0123456789abcdef" (src/serve.rs, Responses::new).
    pat = b"0123456789abcdef"
    return (pat * (body_size // 16 + 1))[:body_size]


def cmd_files(d, n):
    os.makedirs(os.path.join(d, "f"), exist_ok=True)
    for k in range(1, n + 1):
        with open(os.path.join(d, "f", str(k)), "wb") as f:
            f.write(expected_file(k))


def cmd_list(n, bases):
    nfiles = int(os.environ.get("SOAK_NFILES", "1000"))
    out = sys.stdout
    for i in range(n):
        b = bases[i % len(bases)]
        if b.endswith("/f/"):
            out.write(f"{b}{1 + i % nfiles}\n")
        else:
            out.write(f"{b}s/{i}\n")


def cmd_check(list_path, results_path, save_dir, body_size):
    with open(list_path) as f:
        urls = [line.rstrip("\n") for line in f]
    n = len(urls)
    serve_body = expected_serve(body_size)
    seen = bytearray(n)
    dup = torn = wrong_url = bad_index = 0
    status = {}
    errors = {}
    ok = mismatched = missing_file = 0
    examples = []

    def example(msg):
        if len(examples) < 10:
            examples.append(msg)

    with open(results_path, "rb") as f:
        for raw in f:
            try:
                r = json.loads(raw)
            except ValueError:
                torn += 1
                example(f"not a JSON line: {raw[:120]!r}")
                continue
            i = r.get("index")
            if not isinstance(i, int) or not 0 <= i < n:
                bad_index += 1
                example(f"index out of range: {raw[:120]!r}")
                continue
            if seen[i]:
                dup += 1
                example(f"index {i} has more than one line")
                continue
            seen[i] = 1
            if r.get("url") != urls[i]:
                wrong_url += 1
                example(f"index {i}: url {r.get('url')!r}, list has {urls[i]!r}")
            st = r.get("status")
            status[str(st)] = status.get(str(st), 0) + 1
            if r.get("error"):
                kind = r["error"].split(":", 1)[0]
                errors[kind] = errors.get(kind, 0) + 1
            if st == 200 and not r.get("error"):
                path = r.get("path")
                if not path:
                    missing_file += 1
                    example(f"index {i}: 200 without a saved path")
                    continue
                try:
                    with open(path, "rb") as b:
                        got = b.read()
                except OSError as e:
                    missing_file += 1
                    example(f"index {i}: {e}")
                    continue
                url = urls[i]
                if "/f/" in url:
                    want = expected_file(int(url.rsplit("/", 1)[1]))
                else:
                    want = serve_body
                if got == want and r.get("body_bytes") == len(want):
                    ok += 1
                else:
                    mismatched += 1
                    example(
                        f"index {i} ({url}): saved {len(got)} bytes, body_bytes {r.get('body_bytes')}, "
                        f"expected {len(want)} bytes, equal={got == want}"
                    )
    absent = n - sum(seen)
    lines_ok = absent == 0 and dup == 0 and torn == 0 and bad_index == 0 and wrong_url == 0
    bodies_ok = mismatched == 0 and missing_file == 0
    all_200 = status.get("200", 0) == n and not errors
    print(
        json.dumps(
            {
                "urls": n,
                "absent": absent,
                "duplicate": dup,
                "torn": torn,
                "bad_index": bad_index,
                "wrong_url": wrong_url,
                "status": status,
                "errors": errors,
                "bodies_exact": ok,
                "bodies_mismatched": mismatched,
                "bodies_missing": missing_file,
                "lines_ok": lines_ok,
                "bodies_ok": bodies_ok,
                "all_200": all_200,
            }
        )
    )
    for e in examples:
        print("  " + e, file=sys.stderr)
    return 0 if lines_ok and bodies_ok and all_200 else 1


def main():
    cmd = sys.argv[1]
    if cmd == "files":
        cmd_files(sys.argv[2], int(sys.argv[3]))
    elif cmd == "list":
        cmd_list(int(sys.argv[2]), sys.argv[3:])
    elif cmd == "check":
        sys.exit(cmd_check(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
