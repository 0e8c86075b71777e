//! The deploy lock (SPEC §3): one deploy or rollback at a time per state store. `flock` on
//! `<dir>/lock`, whose JSON body names the holder; a crashed holder's lock frees itself because
//! the kernel drops a dead process's flock.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Who holds the lock (the lock file's JSON body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockInfo {
    pub pid: u32,
    pub host: String,
    pub actor: String,
    pub deploy_id: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// `deploy` or `rollback`.
    pub command: String,
}

/// Holds the lock until dropped.
pub struct LockGuard {
    _private: (),
}

/// Takes the lock, waiting up to `wait` (polling) when another process holds it. Held by
/// another: exit code 5 with the holder's pid, host, actor, deploy id and start time.
pub fn acquire(dir: &Path, info: &LockInfo, wait: Option<Duration>) -> Result<LockGuard, Error> {
    let _ = (dir, info, wait);
    Err(Error::failed("the deploy lock is not implemented yet"))
}

/// The holder, if the lock is held now.
pub fn holder(dir: &Path) -> Result<Option<LockInfo>, Error> {
    let _ = dir;
    Err(Error::failed("the deploy lock is not implemented yet"))
}
