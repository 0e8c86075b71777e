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

/// Sends `sig` to the process `pid` (a `Child::id()`), as a terminal or a CI runner would.
pub fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("a pid fits in i32");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}
