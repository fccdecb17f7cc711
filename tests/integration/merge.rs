//! One list over several processes: `fetch --shard K/N` (or `--shard auto` with a Kubernetes
//! Indexed Job's variables) and `ringfetch merge` of their summaries and result lines.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// The p99 of a `latency_histogram` (`[[µs, count], …]`, ascending): the first bucket whose
/// cumulative count reaches 99% of the total, as HdrHistogram defines it.
fn p99_of(buckets: &[(u64, u64)]) -> u64 {
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    let wanted = ((total as f64) * 0.99).ceil().max(1.0) as u64;
    let mut seen = 0;
    for &(us, n) in buckets {
        seen += n;
        if seen >= wanted {
            return us;
        }
    }
    0
}

fn buckets(summary: &Value) -> Vec<(u64, u64)> {
    summary["latency_histogram"]
        .as_array()
        .unwrap_or_else(|| panic!("no latency_histogram: {summary}"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

/// Four processes with `--shard k/4` over one list, then `merge`: the joined results hold every
/// index once, the merged summary adds the counts up, and its p99 is the p99 of the four histograms
/// added together (not an average of four p99s).
#[test]
fn four_shards_merge_into_one_run() {
    let serve = start_serve(&[]);
    let list: Vec<String> = (0..400).map(|i| serve.url(&format!("/{i}"))).collect();
    let dir = tempdir();
    let file = dir.path().join("urls.txt");
    fs::write(&file, lines(&list)).expect("write list");
    let mut summaries = Vec::new();
    let mut results = Vec::new();
    for k in 0..4 {
        let (summary, out) = (
            dir.path().join(format!("s{k}.json")),
            dir.path().join(format!("r{k}.jsonl")),
        );
        let mut cmd = Command::new(bin());
        cmd.arg("fetch")
            .arg(&file)
            .args(["--shard", &format!("{k}/4"), "-o", arg(&out), "--json"]);
        let done = run_child(cmd, None);
        assert_eq!(done.code, 0, "{}", done.stderr);
        fs::write(&summary, &done.stdout).expect("write summary");
        summaries.push(summary);
        results.push(out);
    }
    let mut cmd = Command::new(bin());
    cmd.arg("merge").args(&summaries);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let merged = parse_summary(&done.stdout);
    assert_eq!(merged["requests"], 400, "{merged}");
    assert_eq!(merged["status"]["200"], 400, "{merged}");
    assert_eq!(error_total(&merged), 0);
    // The shards of a fetch: how they ended carries over.
    assert_eq!(merged["interrupted"], false, "{merged}");
    assert_eq!(merged["not_fetched"], 0, "{merged}");
    let parts: Vec<Value> = summaries
        .iter()
        .map(|p| parse_summary(&fs::read_to_string(p).unwrap()))
        .collect();
    let mut all: Vec<(u64, u64)> = parts.iter().flat_map(buckets).collect();
    all.sort();
    let mut combined: Vec<(u64, u64)> = Vec::new();
    for (us, n) in all {
        match combined.last_mut() {
            Some(last) if last.0 == us => last.1 += n,
            _ => combined.push((us, n)),
        }
    }
    assert_eq!(merged["latency_us"]["p99"], p99_of(&combined), "{merged}");
    assert_eq!(
        buckets(&merged),
        combined,
        "the merged histogram is the sum"
    );

    let joined = dir.path().join("all.jsonl");
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--results"])
        .args(&results)
        .args(["-o", arg(&joined)]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let rows = parse_jsonl(&fs::read_to_string(&joined).unwrap());
    let indexes: BTreeSet<u64> = rows.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(rows.len(), 400);
    assert_eq!(indexes, (0..400).collect());

    // The same file twice is caught, naming the index.
    let mut cmd = Command::new(bin());
    cmd.args(["merge", "--results"])
        .arg(&results[0])
        .arg(&results[0]);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 1, "{}", done.stderr);
    assert!(done.stderr.contains("appears twice"), "{}", done.stderr);
}

/// `--shard auto` takes K from JOB_COMPLETION_INDEX and N from RINGFETCH_SHARDS, and without them
/// is a usage error that points to the documentation.
#[test]
fn shard_auto_reads_the_indexed_job_environment() {
    let serve = start_serve(&[]);
    let list: Vec<String> = (0..12).map(|i| serve.url(&format!("/{i}"))).collect();
    let mut cmd = Command::new(bin());
    cmd.args(["fetch", "--shard", "auto", "-o", "-"])
        .env("JOB_COMPLETION_INDEX", "2")
        .env("RINGFETCH_SHARDS", "3");
    let done = run_child(cmd, Some(lines(&list).into_bytes()));
    assert_eq!(done.code, 0, "{}", done.stderr);
    let indexes: BTreeSet<u64> = parse_jsonl(&done.stdout)
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [2, 5, 8, 11].into_iter().collect());
    let mut cmd = Command::new(bin());
    cmd.args(["fetch", "--shard", "auto"])
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("RINGFETCH_SHARDS");
    let done = run_child(cmd, Some(Vec::new()));
    assert_eq!(done.code, 2, "{}", done.stderr);
    assert!(done.stderr.contains("DISTRIBUTED.md"), "{}", done.stderr);
}

#[test]
fn a_summary_that_is_not_a_run_is_refused_not_a_panic() {
    let dir = tempdir();
    let path = dir.path().join("odd.json");
    let good = r#""elapsed_s":1,"threads":1,"latency_histogram":[[100,1]]"#;
    // Each a field no run writes, and the word the refusal must name. Before, 1e300 seconds panicked
    // (Duration::from_secs_f64), and the others were summed as they came: saturated counts, negative
    // or fractional latencies dropped, a status "abc" counted as 0.
    let cases = [
        (
            r#"{"requests":1,"elapsed_s":1e300,"threads":1,"latency_histogram":[[100,1]]}"#
                .to_string(),
            "elapsed_s",
        ),
        (
            format!(r#"{{"requests":18446744073709551615,{good}}}"#),
            "requests",
        ),
        (format!(r#"{{"requests":1,"bytes":-3,{good}}}"#), "bytes"),
        (
            r#"{"requests":1,"elapsed_s":1,"latency_histogram":[[100,1],[-1,1]]}"#.to_string(),
            "latency_histogram",
        ),
        (
            r#"{"requests":1,"elapsed_s":1,"latency_histogram":[[1.5,1]]}"#.to_string(),
            "latency_histogram",
        ),
        (
            r#"{"requests":1,"elapsed_s":1,"latency_histogram":[[18446744073709551615,1]]}"#
                .to_string(),
            "latency_histogram",
        ),
        (
            format!(r#"{{"requests":1,"status":{{"abc":1}},{good}}}"#),
            "status",
        ),
        (
            format!(r#"{{"requests":1,"timeline":[1,"x"],{good}}}"#),
            "timeline",
        ),
    ];
    for (text, names) in &cases {
        fs::write(&path, text).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("merge").arg(&path).arg(&path);
        let done = run_child(cmd, None);
        assert_eq!(done.code, 2, "{text}: {}", done.stderr);
        assert!(done.stderr.contains(names), "{text}: {}", done.stderr);
    }
    // The same shape with real values merges.
    fs::write(
        &path,
        format!(r#"{{"requests":1,"status":{{"200":1}},{good}}}"#),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("merge").arg(&path).arg(&path);
    let done = run_child(cmd, None);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(done.stdout.contains(r#""requests":2"#), "{}", done.stdout);
}
