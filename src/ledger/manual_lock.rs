//! The manual lock (`shipgate lock acquire --message TEXT [--ttl DUR]`): a person holds the
//! deploy lock, with a reason, until they release it or its ttl ends.
//!
//! A person is not a process, so the lock cannot be a held `flock` (the command exits). File
//! store: `<dir>/manual-lock`, a JSON [`ManualLock`], written by `lock acquire` while it holds
//! the flock, and read by every taker of the deploy lock right after taking the flock — so a
//! deploy and a `lock acquire` never both get through. Git store: the body of the lease ref
//! carries it (see [`super::git`]).
//!
//! Behind a live manual lock every taker (deploy, rollback, recover, another `lock acquire`)
//! exits 5 at once with the holder's message, actor, since and until: `--lock-wait` does not
//! wait, because a person's lock ends only when they release it. An expired one is ignored,
//! and cleared by the next taker (with a note and an audit record). `lock release` frees it
//! without `--force`: no process can be in the middle of a change under it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuditRecord;
use crate::error::Error;
use crate::exit_code;
use crate::output::neutral::inline;

/// The file of the file store's manual lock.
pub const FILE: &str = "manual-lock";

/// The longest message: a reason is a line someone reads in an error, not a document.
pub const MAX_MESSAGE: usize = 500;

/// A person's hold on the deploy lock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManualLock {
    /// Why, as given (neutralised only when shown).
    pub message: String,
    pub actor: String,
    pub host: String,
    /// RFC 3339 UTC.
    pub since: String,
    /// RFC 3339 UTC when it ends by itself; `None`: until released.
    pub until: Option<String>,
}

impl ManualLock {
    /// A lock taken now by `actor` on `host`. Exit 2 for an empty or overlong message, a zero
    /// or absurd ttl.
    pub fn new(
        message: &str,
        ttl: Option<Duration>,
        actor: &str,
        host: &str,
    ) -> Result<ManualLock, Error> {
        let message = message.trim();
        if message.is_empty() {
            return Err(Error::usage("the manual lock needs a message").with_hint(
                "say why deploys must wait, e.g. --message \"db migration, ask alice\"",
            ));
        }
        if message.chars().count() > MAX_MESSAGE {
            return Err(Error::usage(format!(
                "the manual lock's message is longer than {MAX_MESSAGE} characters"
            ))
            .with_hint("keep it to a line; link to the details"));
        }
        let now = Utc::now();
        let until = match ttl {
            None => None,
            Some(ttl) if ttl.is_zero() => {
                return Err(Error::usage("--ttl must be longer than zero")
                    .with_hint("leave --ttl out to hold the lock until `shipgate lock release`"))
            }
            Some(ttl) => Some(
                chrono::Duration::from_std(ttl)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .filter(|t| t.timestamp() < 253_402_300_800) // 10000-01-01
                    .ok_or_else(|| {
                        Error::usage("--ttl is too long").with_hint(
                            "leave --ttl out to hold the lock until `shipgate lock release`",
                        )
                    })?,
            ),
        };
        Ok(ManualLock {
            message: message.to_string(),
            actor: actor.to_string(),
            host: host.to_string(),
            since: rfc3339(now),
            until: until.map(rfc3339),
        })
    }

    /// When it ends by itself. An `until` that does not parse never ends (fail closed: the
    /// person said hands off).
    pub fn until_time(&self) -> Option<DateTime<Utc>> {
        let until = self.until.as_deref()?;
        DateTime::parse_from_rfc3339(until)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn is_expired(&self) -> bool {
        self.until_time().is_some_and(|t| Utc::now() >= t)
    }

    /// `alice on host-1 since T until U: "message"`, the message made safe to print.
    pub fn describe(&self) -> String {
        let or = |s: &str| {
            if s.is_empty() {
                "?".to_string()
            } else {
                inline(s).into_owned()
            }
        };
        let until = match &self.until {
            Some(u) => format!("until {}", or(u)),
            None => "until released".to_string(),
        };
        format!(
            "{} on {} since {} {until}: \"{}\"",
            or(&self.actor),
            or(&self.host),
            or(&self.since),
            inline(&self.message)
        )
    }

    /// Exit 5 for a taker of the deploy lock (`waited`: its `--lock-wait`, which does not wait
    /// behind a person).
    pub fn held_error(&self, waited: Option<Duration>) -> Error {
        let mut msg = format!(
            "the deploy lock is held by a manual lock: {}",
            self.describe()
        );
        if let Some(w) = waited {
            msg.push_str(&format!(
                "; --lock-wait {} does not wait behind a manual lock (it ends only when \
                 released{})",
                humantime::format_duration(w),
                if self.until.is_some() {
                    " or at its ttl"
                } else {
                    ""
                }
            ));
        }
        Error::new(exit_code::LOCKED, msg).with_hint(format!(
            "ask {} (`shipgate lock status`); once deploys may go ahead, `shipgate lock release` \
             frees it (recorded in the audit trail)",
            if self.actor.is_empty() {
                "its holder".to_string()
            } else {
                inline(&self.actor).into_owned()
            }
        ))
    }

    /// An audit record about this lock: `context` holds it, and `by` (who did `title`) under
    /// `role` when given.
    pub fn audit(&self, title: &str, message: String, by: Option<(&str, &str)>) -> AuditRecord {
        let mut context = serde_json::json!({ "manual": self });
        if let Some((role, actor)) = by {
            context[role] = serde_json::json!({
                "actor": actor,
                "host": crate::pipeline::actor::hostname(),
                "pid": std::process::id(),
            });
        }
        AuditRecord {
            priority: "P3".into(),
            title: title.into(),
            message,
            context,
            deploy_id: None,
            delivered: Vec::new(),
            failed: Vec::new(),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The file store's manual lock, if there is one. A body that does not parse holds the lock
/// (fail closed) with a message saying so; `lock release` removes it.
pub fn read(dir: &Path) -> Result<Option<ManualLock>, Error> {
    let Some(bytes) = super::file::read(&path(dir))? else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        ManualLock {
            message: format!("(`{}` is unreadable)", path(dir).display()),
            ..ManualLock::default()
        }
    })))
}

/// Writes the file store's manual lock atomically (temp file, fsync, rename). The caller holds
/// the flock.
pub fn write(dir: &Path, lock: &ManualLock) -> Result<(), Error> {
    let target = path(dir);
    let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let body = serde_json::to_vec(lock).unwrap_or_default();
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::failed(format!("cannot write `{}`", target.display())).caused_by(e));
    }
    super::jsonl::sync_dir(dir);
    Ok(())
}

/// Removes the file store's manual lock (gone already is fine).
pub fn remove(dir: &Path) -> Result<(), Error> {
    let target = path(dir);
    match std::fs::remove_file(&target) {
        Ok(()) => {
            super::jsonl::sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::failed(format!("cannot remove `{}`", target.display())).caused_by(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_sets_until_and_bad_input_is_refused() {
        let m = ManualLock::new(" why ", Some(Duration::from_secs(3600)), "alice", "h").unwrap();
        assert_eq!(m.message, "why");
        assert!(!m.is_expired());
        assert!(m.until_time().unwrap() > Utc::now());
        let forever = ManualLock::new("why", None, "alice", "h").unwrap();
        assert!(!forever.is_expired() && forever.until.is_none());
        for (msg, ttl) in [
            ("", None),
            ("  ", None),
            ("x", Some(Duration::ZERO)),
            ("x", Some(Duration::from_secs(u64::MAX / 4))),
        ] {
            let e = ManualLock::new(msg, ttl, "a", "h").err().unwrap();
            assert_eq!(e.exit_code(), exit_code::USAGE, "{msg:?} {ttl:?}");
        }
        assert!(ManualLock::new(&"x".repeat(MAX_MESSAGE + 1), None, "a", "h").is_err());
    }

    #[test]
    fn an_unparsable_until_never_expires_and_the_message_is_shown_safely() {
        let m = ManualLock {
            message: "a\x1b[2Jb\nc".into(),
            until: Some("soon".into()),
            ..ManualLock::default()
        };
        assert!(!m.is_expired());
        let d = m.describe();
        assert!(!d.contains('\x1b') && !d.contains('\n'), "{d}");
        let e = m.held_error(Some(Duration::from_secs(5)));
        assert_eq!(e.exit_code(), exit_code::LOCKED);
        assert!(e.message.contains("does not wait behind a manual lock"));
    }

    #[test]
    fn the_file_round_trips_and_a_torn_one_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let m = ManualLock::new("why", None, "alice", "h").unwrap();
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(m));
        std::fs::write(path(dir.path()), "{\"mess").unwrap();
        let torn = read(dir.path()).unwrap().unwrap();
        assert!(!torn.is_expired() && torn.message.contains("unreadable"));
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
