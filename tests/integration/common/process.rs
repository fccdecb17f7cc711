//! Running the real binary: its path, a temp dir per test, a child process under a hard deadline
//! (`run_child` into `Finished`), and `tail` to keep long output readable in failure messages.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A child still running after this long is killed and the test fails: a hang must fail the
/// test instead of stalling CI.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(60);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringfetch"))
}

/// Whether this process runs as root (network namespaces, nftables and tc need it).
pub fn is_root() -> bool {
    // The effective uid is the second field of /proc's `Uid:` line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether `tool` is on the PATH.
/// Whether this kernel consumes provided buffers incrementally (Linux 6.12): `--ring-buffers
/// COUNTxSIZE,incremental` is then accepted, and pools past 512 receivers are incremental.
pub fn incremental_kernel() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12)
}

/// `pool` taken whole, and consumed incrementally where the kernel can (pieces of one buffer then
/// belong to different connections, and a buffer goes back only after its last piece).
pub fn pools(pool: &str) -> Vec<String> {
    let mut pools = vec![pool.to_string()];
    if incremental_kernel() {
        pools.push(format!("{pool},incremental"));
    }
    pools
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create a temp dir")
}

/// What a finished child left behind.
pub struct Finished {
    /// The exit code, or 128 + signal number when a signal ended it (a crash is not an exit 0/1/2).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` to completion with `stdin` fed through a pipe (closed when written) or /dev/null.
pub fn run_child(mut cmd: Command, stdin: Option<Vec<u8>>) -> Finished {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A writer thread, because a large input could fill the pipe before the child reads it.
        // Dropping the pipe at the end gives the child its EOF.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout was piped"));
    let stderr = drain(child.stderr.take().expect("stderr was piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmd:?} still running after {CHILD_DEADLINE:?}; killed. stderr:\n{}",
                tail(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Finished {
        code,
        stdout: String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        elapsed,
    }
}

fn drain<R: Read + Send + 'static>(mut reader: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// The last few KiB of a long text, so a failure message stays readable.
pub fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(4000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A path as a `&str` argument (temp paths are always UTF-8 here).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A tmpfs of `size` mounted at `path` while it lives.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// None where mounting is not allowed (not root).
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
