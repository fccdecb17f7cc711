//! The soak with faults, short version: `scripts/soak.sh --short` runs bench and fetch against
//! `serve` and nginx inside a network namespace of its own while it drops, resets and rate-limits
//! packets, kills and restarts the server, spoils connections through a proxy and holds a server at
//! its descriptor limit; it exits 0 only when every invariant held (one line per URL with byte-exact
//! bodies, bench's count matching nginx's, bounded RSS, no run hung). Skipped with a message where
//! the namespace cannot be made (not root, no `ip`/`nft`/`tc`, no nginx).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// The short soak takes about a minute; five on a loaded 2-core machine is still not a hang.
const SOAK_DEADLINE: Duration = Duration::from_secs(300);

/// Why the soak cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !is_root() {
        return Some("not root (a network namespace, nftables and tc need it)".into());
    }
    for tool in ["ip", "nft", "tc", "python3", "curl"] {
        if !have(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/usr/sbin/nginx").exists() {
        return Some("/usr/sbin/nginx is not installed".into());
    }
    None
}

#[test]
fn short_soak_with_faults_holds_every_invariant() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED short_soak_with_faults_holds_every_invariant: {why}");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/soak.sh");
    let out = tempdir();
    let log = out.path().join("soak.log");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("--short")
        .env("RINGFETCH", bin())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(out.path().join("soak.err")).unwrap())
        .spawn()
        .expect("spawn scripts/soak.sh");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for soak.sh") {
            break status;
        }
        if start.elapsed() > SOAK_DEADLINE {
            // SIGTERM first: the script's trap removes its namespace and everything in it.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!(
                "scripts/soak.sh --short still running after {SOAK_DEADLINE:?} (hung); its output:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&log).unwrap_or_default();
    let stderr = std::fs::read_to_string(out.path().join("soak.err")).unwrap_or_default();
    assert!(
        status.success(),
        "scripts/soak.sh --short: {status}\n{}\nstderr:\n{}",
        tail(&stdout),
        tail(&stderr)
    );
    // The script's own verdicts, so a script that skipped its checks cannot pass.
    assert!(stdout.contains("PASS  fetch lines"), "{}", tail(&stdout));
    assert!(stdout.contains("PASS  bench count"), "{}", tail(&stdout));
    assert!(!stdout.contains("FAIL"), "{}", tail(&stdout));
    println!("{}", tail(&stdout));
}
