//! Waiting on and signalling the binary under test: polling (never a fixed sleep) and signals.

use std::time::{Duration, Instant};

pub use libc::{SIGINT, SIGKILL, SIGTERM};

/// Polls `cond` every 10 ms until it holds; fails the test naming `what` after 30 s.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Like [`wait_until`], for a value: polls `f` every 100 ms until it returns `Some`, for at most `limit`; panics naming `what`
/// (and the last state `f` reported through `last`) when it never does.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut(&mut String) -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `sig` to the process `pid` (a `Child::id()`), as a terminal or a CI runner would.
pub fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("a pid fits in i32");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// What a finished process read, from the kernel's I/O accounting (`/proc/<pid>/io`), and its
/// output.
#[derive(Debug)]
pub struct Reads {
    /// `rchar`: bytes the process asked `read` (and kin) for, whether from disk or cache.
    pub bytes: u64,
    /// `syscr`: read system calls.
    pub calls: u64,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to the end and returns how much it read. The child is left a zombie
/// (`waitid` with `WNOWAIT`) while its accounting is read, then reaped. Its output goes to
/// files (a pipe nobody drains would block it).
pub fn count_reads(mut cmd: std::process::Command) -> Reads {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    cmd.stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    shipgate::exec::wait_exited_unreaped(pid).expect("waitid");
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/<pid>/io");
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/io: {io}"))
    };
    let (bytes, calls) = (field("rchar:"), field("syscr:"));
    let status = child.wait().expect("reap");
    Reads {
        bytes,
        calls,
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}
