//! Every exit code shipgate can end with (SPEC §6), in one table.
//!
//! CI systems and cron wrappers branch on these numbers, so they never change meaning.

/// Success.
pub const SUCCESS: i32 = 0;
/// Failed, and every change was rolled back (or: an event could not be delivered).
pub const FAILED: i32 = 1;
/// Usage or configuration error; nothing was changed.
pub const USAGE: i32 = 2;
/// A rollback failed: some regions may run an unknown or mixed version; a human must look.
pub const ROLLBACK_FAILED: i32 = 3;
/// Partial: some regions failed under `continue` or `rollback-region`.
pub const PARTIAL: i32 = 4;
/// Another deploy holds the lock.
pub const LOCKED: i32 = 5;
/// `status --check`: a gate tripped, or `--live` found drift.
pub const CHECK_FAILED: i32 = 6;
/// Blocked by policy (a closed window, a freeze, a missing approval) or an unmet
/// precondition; nothing was changed. Never for a rollback or `recover`.
pub const BLOCKED: i32 = 7;
/// Interrupted by SIGHUP: the terminal or SSH session went away (after cleanup).
pub const INTERRUPTED_SIGHUP: i32 = 129;
/// Interrupted by SIGINT (after cleanup).
pub const INTERRUPTED_SIGINT: i32 = 130;
/// Interrupted by SIGTERM (after cleanup).
pub const INTERRUPTED_SIGTERM: i32 = 143;

/// The table printed in `--help` and the README.
pub const TABLE: &[(i32, &str)] = &[
    (SUCCESS, "success"),
    (
        FAILED,
        "failed, and every change was rolled back (or: an event could not be delivered)",
    ),
    (USAGE, "usage or configuration error; nothing was changed"),
    (
        ROLLBACK_FAILED,
        "rollback failed: some regions may run an unknown or mixed version",
    ),
    (
        PARTIAL,
        "partial: some regions failed under `continue` or `rollback-region`",
    ),
    (LOCKED, "another deploy holds the lock"),
    (
        CHECK_FAILED,
        "`status --check`: a gate tripped, or `--live` found drift",
    ),
    (
        BLOCKED,
        "blocked by policy or an unmet precondition; nothing was changed",
    ),
    (
        INTERRUPTED_SIGHUP,
        "interrupted by SIGHUP: terminal closed (after cleanup)",
    ),
    (INTERRUPTED_SIGINT, "interrupted by SIGINT (after cleanup)"),
    (
        INTERRUPTED_SIGTERM,
        "interrupted by SIGTERM (after cleanup)",
    ),
];
