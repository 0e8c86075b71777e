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
