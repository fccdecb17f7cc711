//! `ringfetch fetch` as a function: `run_fetch`/`run_fetch_text` (URL list in as `Input` says,
//! parsed JSONL and summary out as `Output`), the parsers behind it, the `assert_*` checks on
//! results, and readers of what a run left on disk (`saved`, `entries`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::process::{bin, run_child, tail, tempdir};

/// Where `run_fetch_text` puts the URL list.
pub enum Input {
    /// A file named as the positional argument.
    File,
    /// Standard input, no positional argument.
    Stdin,
    /// Standard input, named by the positional argument `-`.
    Dash,
    /// A positional argument naming a file that does not exist.
    Missing,
}

/// One `ringfetch fetch` run, parsed.
pub struct Output {
    pub code: i32,
    /// One JSON object per line of the `-o` file, in the order written.
    pub results: Vec<Value>,
    /// The `--json` summary from stdout, or `Value::Null` when stdout held no JSON object.
    pub summary: Value,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Kept so the run's files live as long as the output.
    _dir: TempDir,
}

impl Output {
    /// The results keyed by `index`; fails the test if an index is missing or repeated.
    pub fn by_index(&self) -> BTreeMap<u64, &Value> {
        let mut map = BTreeMap::new();
        for r in &self.results {
            let index = r["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("result without an integer index: {r}"));
            assert!(
                map.insert(index, r).is_none(),
                "index {index} reported twice\n{}",
                self.describe()
            );
        }
        map
    }

    /// The one result for `index`.
    pub fn result(&self, index: u64) -> &Value {
        let all = self.by_index();
        all.get(&index)
            .copied()
            .unwrap_or_else(|| panic!("no result for index {index}\n{}", self.describe()))
    }

    /// Everything worth seeing when an assertion fails.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "exit code {} after {:?}; {} result lines",
            self.code,
            self.elapsed,
            self.results.len()
        );
        for r in self.results.iter().take(8) {
            text.push_str(&format!("\n  {r}"));
        }
        text.push_str(&format!(
            "\nsummary: {}\nstdout:\n{}\nstderr:\n{}",
            self.summary,
            tail(&self.stdout),
            tail(&self.stderr)
        ));
        text
    }
}

/// `ringfetch fetch FILE -o OUT --json ARGS` with one URL per line.
pub fn run_fetch(urls: &[String], args: &[&str]) -> Output {
    run_fetch_text(&lines(urls), Input::File, args)
}

/// `ringfetch fetch` over raw list text (comments, blank lines...), fed as `input` says.
pub fn run_fetch_text(text: &str, input: Input, args: &[&str]) -> Output {
    let dir = tempdir();
    let out = dir.path().join("out.jsonl");
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir.path()).arg("fetch");
    let mut stdin = None;
    match input {
        Input::File => {
            let list = dir.path().join("urls.txt");
            fs::write(&list, text).expect("write the URL list");
            cmd.arg(list);
        }
        Input::Stdin => stdin = Some(text.as_bytes().to_vec()),
        Input::Dash => {
            cmd.arg("-");
            stdin = Some(text.as_bytes().to_vec());
        }
        Input::Missing => {
            cmd.arg(dir.path().join("no-such-list.txt"));
        }
    }
    cmd.arg("-o").arg(&out).arg("--json").args(args);
    let finished = run_child(cmd, stdin);
    let results = match fs::read_to_string(&out) {
        Ok(text) => parse_jsonl(&text),
        Err(_) => Vec::new(),
    };
    Output {
        code: finished.code,
        results,
        summary: parse_summary(&finished.stdout),
        stdout: finished.stdout,
        stderr: finished.stderr,
        elapsed: finished.elapsed,
        _dir: dir,
    }
}

/// The URL list as file text: one per line, newline-terminated.
pub fn lines(urls: &[String]) -> String {
    urls.iter().map(|u| format!("{u}\n")).collect()
}

/// Parses JSONL; a line that is not a JSON object fails the test, since every line must be one.
pub fn parse_jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}"));
            assert!(v.is_object(), "JSONL line is not an object: {l}");
            v
        })
        .collect()
}

/// The summary object from `--json` output: the whole text if it is one JSON object, else the
/// last line that is one (so a stray text line elsewhere does not hide it).
pub fn parse_summary(text: &str) -> Value {
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
        return v;
    }
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.is_object())
        .unwrap_or(Value::Null)
}

/// The run ended before `limit`: a stall would have taken the full timeout instead.
#[track_caller]
pub fn assert_finished_within(out: &Output, limit: Duration) {
    assert!(
        out.elapsed < limit,
        "took {:?}: {}",
        out.elapsed,
        out.describe()
    );
}

/// A successful result: this status and body length, and `error` null.
#[track_caller]
pub fn assert_response(r: &Value, status: u64, body_bytes: u64) {
    assert_eq!(r["status"], status, "status of {r}");
    assert_eq!(r["body_bytes"], body_bytes, "body_bytes of {r}");
    assert!(r["error"].is_null(), "expected no error: {r}");
}

/// A failed result whose `error` is `"KIND: message"` for this KIND, with a non-empty message.
#[track_caller]
pub fn assert_error(r: &Value, kind: &str) {
    let error = r["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a {kind} error: {r}"));
    let prefix = format!("{kind}: ");
    assert!(
        error.starts_with(&prefix) && error.len() > prefix.len(),
        "expected error kind {kind:?}: {r}"
    );
}

/// The total of the summary's `errors` object; fails the test if it is not an object of counts.
#[track_caller]
pub fn error_total(summary: &Value) -> u64 {
    let errors = summary["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("summary has no errors object: {summary}"));
    errors
        .values()
        .map(|v| v.as_u64().expect("error counts are integers"))
        .sum()
}

/// The bytes saved for `index` under `dir`, or None when no file was left there.
pub fn saved(dir: &Path, index: u64) -> Option<Vec<u8>> {
    fs::read(dir.join(index.to_string())).ok()
}

/// The names of the entries in `dir` (empty if it does not exist), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Keeps every URL on one connection, one worker, so connection reuse is observable.
pub const ONE_CONN: [&str; 4] = ["--conns-per-host", "1", "-t", "1"];
