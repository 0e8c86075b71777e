//! The deploy lock (SPEC §3): one deploy or rollback at a time per state store. `flock` on
//! `<dir>/lock`, whose JSON body names the holder; a crashed holder's lock frees itself because
//! the kernel drops a dead process's flock. The body of a crashed holder stays behind as a
//! "stale" body: harmless (the next deploy overwrites it), shown by `shipgate lock status`.
//!
//! `shipgate lock release --force` removes the file: the next deploy creates a fresh one and locks
//! that, so a live but stuck holder no longer blocks anyone (it keeps a lock on a file no one else
//! opens). [`acquire`] checks, after locking, that the file it locked is still the one at the path.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error};
use crate::exit_code;

/// How often `--lock-wait` retries.
pub const POLL: Duration = Duration::from_millis(250);

/// Even without `--lock-wait`, retry this long: `shipgate lock status` takes the lock for a
/// moment to see whether anyone holds it, and must not make a deploy starting then fail.
const GRACE: Duration = Duration::from_millis(200);

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

impl LockInfo {
    /// One line naming the holder: pid, host, actor, deploy id, start time and command.
    pub fn describe(&self) -> String {
        let or = |s: &str| {
            if s.is_empty() {
                "?".to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "pid {} on {} (actor {}, {} {}, started {})",
            self.pid,
            or(&self.host),
            or(&self.actor),
            or(&self.command),
            or(&self.deploy_id),
            or(&self.started_at)
        )
    }

    /// This process, now, for `command` and `deploy_id`.
    pub fn current(command: &str, deploy_id: &str, actor: &str) -> LockInfo {
        LockInfo {
            pid: std::process::id(),
            host: hostname(),
            actor: actor.to_string(),
            deploy_id: deploy_id.to_string(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        }
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The lock file of a state directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("lock")
}

/// Holds the lock until dropped.
pub struct LockGuard {
    held: Held,
}

enum Held {
    File {
        file: File,
    },
    /// The git store's lease: released (and its heartbeat stopped) when dropped.
    Git(#[allow(dead_code)] super::git::Lease),
}

impl LockGuard {
    pub(super) fn git(lease: super::git::Lease) -> LockGuard {
        LockGuard {
            held: Held::Git(lease),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Held::File { file } = &mut self.held {
            // Empty the body first, so no one reads us as the holder after the unlock.
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}

/// How often a `--lock-wait` says again who holds the lock.
const WAIT_NOTICE_EVERY: Duration = Duration::from_secs(30);

/// Takes the lock, waiting up to `wait` (polling every 250 ms) when another process holds it.
/// Held by another: exit code 5 with the holder's pid, host, actor, deploy id and start time.
pub fn acquire(dir: &Path, info: &LockInfo, wait: Option<Duration>) -> Result<LockGuard, Error> {
    acquire_until(dir, info, wait, || false)
}

/// [`acquire`], giving up as soon as `interrupted()` says so (a signal while waiting with
/// `--lock-wait`); the caller turns that into its own error.
pub fn acquire_until(
    dir: &Path,
    info: &LockInfo,
    wait: Option<Duration>,
    interrupted: impl Fn() -> bool,
) -> Result<LockGuard, Error> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create state directory `{}`", dir.display()))?;
    let path = path(dir);
    let deadline = Instant::now() + wait.unwrap_or_default().max(GRACE);
    let mut said: Option<Instant> = None;
    loop {
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                if !still_at_path(&file, &path) {
                    // Force-released between our open and our lock: lock the new file instead.
                    continue;
                }
                write_body(&mut file, info)
                    .with_context(|| format!("cannot write the lock body `{}`", path.display()))?;
                return Ok(LockGuard {
                    held: Held::File { file },
                });
            }
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                if interrupted() {
                    return Err(Error::failed(
                        "interrupted while waiting for the deploy lock; nothing was changed",
                    ));
                }
                if now >= deadline {
                    return Err(held_error(&read_body(&mut file), wait));
                }
                // A silent wait looks hung: say who holds the lock, and again every 30 s.
                if let Some(total) = wait {
                    if said.is_none_or(|at| now - at >= WAIT_NOTICE_EVERY) {
                        said = Some(now);
                        let holder = read_body(&mut file).map_or_else(
                            || "a process that has not written its details yet".to_string(),
                            |b| b.describe(),
                        );
                        crate::say!(
                            "waiting for the deploy lock (up to {}, {} left): held by {holder}",
                            humantime::format_duration(Duration::from_secs(total.as_secs())),
                            humantime::format_duration(Duration::from_secs(
                                (deadline - now).as_secs()
                            ))
                        );
                    }
                }
                let step = if wait.is_some() {
                    POLL
                } else {
                    Duration::from_millis(50)
                };
                std::thread::sleep(step.min(deadline - now));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::failed(format!("cannot lock `{}`", path.display())).caused_by(e))
            }
        }
    }
}

/// Opens (creating) the lock file, never through a symbolic link.
fn open(path: &Path) -> Result<File, Error> {
    super::file::open(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )?
    .ok_or_else(|| Error::failed(format!("cannot create the lock file `{}`", path.display())))
}

fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn write_body(file: &mut File, info: &LockInfo) -> std::io::Result<()> {
    let body = serde_json::to_vec(info)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&body)?;
    file.sync_all()
}

fn read_body(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    if text.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(&text).unwrap_or_default())
}

pub(super) fn held_error(holder: &Option<LockInfo>, waited: Option<Duration>) -> Error {
    let who = match holder {
        Some(info) => info.describe(),
        None => "another process (it has not written its details yet)".to_string(),
    };
    let mut msg = format!("another deploy holds the lock: {who}");
    if let Some(w) = waited {
        msg.push_str(&format!(
            "; still held after waiting {}",
            humantime::format_duration(w)
        ));
    }
    Error::new(exit_code::LOCKED, msg).with_hint(
        "wait for it with `--lock-wait 10m`, or see `shipgate lock status`; \
         `shipgate lock release --force` if that process is stuck",
    )
}

/// The lock's state, seen from outside.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LockState {
    /// Someone holds the flock now.
    pub held: bool,
    /// The holder (when held) or what a crashed holder left (when not).
    pub info: Option<LockInfo>,
    /// A person's lock (`lock acquire --message`), live or expired; not a process.
    pub manual: Option<super::manual_lock::ManualLock>,
}

impl LockState {
    /// A process holds the lock, or a person does (an unexpired manual lock).
    pub fn held_by_anyone(&self) -> bool {
        self.held || self.manual.as_ref().is_some_and(|m| !m.is_expired())
    }
}

/// Whether the lock is held now, and the body. Takes the lock for a moment to find out (flock
/// has no query); [`acquire`] tolerates that.
pub fn state(dir: &Path) -> Result<LockState, Error> {
    let path = path(dir);
    let Some(mut file) = super::file::open_read(&path)? else {
        return Ok(LockState::default());
    };
    let held = match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(e)) => {
            return Err(Error::failed(format!("cannot lock `{}`", path.display())).caused_by(e))
        }
    };
    Ok(LockState {
        held,
        info: read_body(&mut file),
        manual: None,
    })
}

/// The holder, if the lock is held now.
pub fn holder(dir: &Path) -> Result<Option<LockInfo>, Error> {
    let s = state(dir)?;
    Ok(if s.held {
        Some(s.info.unwrap_or_default())
    } else {
        None
    })
}

/// What [`release`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "released", rename_all = "snake_case")]
pub enum Released {
    /// Nothing to do: not held, no body.
    NotHeld,
    /// Not held, but a crashed holder's body was left; it was cleared.
    Stale { info: LockInfo },
    /// Held by a live process; the file was removed (`--force`).
    Forced { info: LockInfo },
    /// A person's lock (`lock acquire`), live or already expired; released without `--force`.
    Manual {
        manual: super::manual_lock::ManualLock,
        expired: bool,
    },
}

/// Releases the lock: clears a stale body; a lock held by a live process is refused (exit 5)
/// unless `force`, which removes the lock file so the next deploy takes a fresh lock.
pub fn release(dir: &Path, force: bool) -> Result<Released, Error> {
    let path = path(dir);
    let Some(mut file) = super::file::open(&path, OpenOptions::new().read(true).write(true))?
    else {
        return Ok(Released::NotHeld);
    };
    match file.try_lock() {
        Ok(()) => {
            let body = read_body(&mut file);
            let _ = file.set_len(0);
            let _ = file.unlock();
            Ok(match body {
                Some(info) => Released::Stale { info },
                None => Released::NotHeld,
            })
        }
        Err(TryLockError::WouldBlock) => {
            let info = read_body(&mut file).unwrap_or_default();
            if !force {
                return Err(live_holder_error(&info));
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove `{}`", path.display()))?;
            Ok(Released::Forced { info })
        }
        Err(TryLockError::Error(e)) => {
            Err(Error::failed(format!("cannot lock `{}`", path.display())).caused_by(e))
        }
    }
}

/// `lock release` without `--force` while a live process holds the lock.
pub(super) fn live_holder_error(info: &LockInfo) -> Error {
    Error::new(
        exit_code::LOCKED,
        format!(
            "the deploy lock is held by a live process: {}",
            info.describe()
        ),
    )
    .with_hint(
        "wait for it to finish; if it is stuck, `shipgate lock release --force` \
         (that process may still be changing your regions)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> LockInfo {
        LockInfo::current("deploy", id, "alice")
    }

    #[test]
    fn a_second_taker_gets_exit_5_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let guard = acquire(dir.path(), &info("d1"), None).unwrap();
        let err = acquire(dir.path(), &info("d2"), None).err().unwrap();
        assert_eq!(err.exit_code(), exit_code::LOCKED);
        assert!(err.message.contains("d1"), "{}", err.message);
        assert!(err.message.contains("alice"));
        assert!(err.message.contains(&std::process::id().to_string()));
        assert_eq!(holder(dir.path()).unwrap().unwrap().deploy_id, "d1");
        drop(guard);
        assert_eq!(holder(dir.path()).unwrap(), None);
        let _again = acquire(dir.path(), &info("d3"), None).unwrap();
    }

    #[test]
    fn lock_wait_polls_until_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let guard = acquire(dir.path(), &info("d1"), None).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(guard);
        });
        let start = Instant::now();
        let g = acquire(dir.path(), &info("d2"), Some(Duration::from_secs(10))).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(500));
        t.join().unwrap();
        drop(g);
        let _g = acquire(dir.path(), &info("d3"), None).unwrap();
        let err = acquire(dir.path(), &info("d4"), Some(Duration::from_millis(300)))
            .err()
            .unwrap();
        assert!(err.message.contains("after waiting"));
    }

    #[test]
    fn force_release_lets_the_next_deploy_take_a_fresh_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _stuck = acquire(dir.path(), &info("d1"), None).unwrap();
        assert_eq!(
            release(dir.path(), false).err().unwrap().exit_code(),
            exit_code::LOCKED
        );
        let r = release(dir.path(), true).unwrap();
        assert!(matches!(r, Released::Forced { ref info } if info.deploy_id == "d1"));
        let _next = acquire(dir.path(), &info("d2"), None).unwrap();
        assert_eq!(holder(dir.path()).unwrap().unwrap().deploy_id, "d2");
    }
}
