//! The ledger (SPEC §4): append-only, hash-chained JSONL history and audit trail, the atomic
//! `status.json`, and the deploy lock.
//!
//! - [`jsonl`]: locked single-write appends, the reverse reader, the streaming chain check.
//! - [`query`] and [`stats`]: `shipgate history` filters and statistics over raw lines.
//! - [`status`]: `status.json` as the fold of history: the one reducer.
//! - [`lock`]: the deploy lock.
//! - [`git`]: the git store: the same files on a branch of the project's remote, the lock a ref;
//!   [`segments`] is its layout on the branch, [`git_cache`] its local cache.
//! - [`extraheader`]: the `http.<url>.extraheader` credential git (and `actions/checkout`) keep
//!   in git config, for the git store's HTTP remotes.
//!
//! The store is a seam: with the git store, the ledger's directory is a cache of the branch
//! (under the repository's git dir) that readers read as plain files; only appends,
//! `status.json` writes and the lock differ.

pub mod extraheader;
pub mod file;
pub mod git;
pub mod git_cache;
pub mod jsonl;
pub mod lock;
pub mod manual_lock;
pub mod query;
pub mod records;
pub mod segments;
pub mod stats;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, StoreKind};
use crate::error::{Context, Error};
pub use jsonl::{Appended, FileKind, Verified};
pub use records::*;

/// A warning found while reading (a torn final line, say), shown to the user.
pub type Warnings = Vec<String>;

pub const HISTORY_FILE: &str = "history.jsonl";
pub const AUDIT_FILE: &str = "audit.jsonl";
pub const STATUS_FILE: &str = "status.json";

/// Where the ledger lives (SPEC §4).
#[derive(Debug, Clone)]
enum Store {
    File,
    /// The directory is the cache of the remote branch ([`git_cache`]).
    Git(Arc<git::GitStore>),
}

/// The state directory: `history.jsonl`, `audit.jsonl`, `status.json`, `lock`.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
    store: Store,
    /// The first append of this run (any clone, any thread) that failed: from then on the run
    /// cannot record what it does, so it must stop changing things ([`Ledger::cannot_record`]).
    unrecorded: Arc<Mutex<Option<String>>>,
    /// Where each appended history record is also sent, once written (the GitHub Deployments
    /// mirror follows history this way, so it shows what history says and nothing else).
    tap: Arc<Mutex<Option<std::sync::mpsc::Sender<HistoryRecord>>>>,
}

/// The files of the state directory, each of which must be a regular file when it exists.
const STATE_FILES: &[&str] = &[
    HISTORY_FILE,
    AUDIT_FILE,
    STATUS_FILE,
    "lock",
    "status.lock",
    manual_lock::FILE,
];

impl Ledger {
    /// Opens (creating when missing) the state directory of the file store. A directory that
    /// cannot be created (its parent is a file, a read-only mount, no permission) is exit 2:
    /// nothing has changed yet.
    pub fn open(dir: &Path) -> Result<Ledger, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            let err = Error::usage(format!("cannot create state directory `{}`", dir.display()))
                .caused_by(&e);
            if dir.exists() && !dir.is_dir() {
                err.with_hint(format!(
                    "`{}` is a file: point --state-dir (SHIPGATE_STATE_DIR) or [state].dir at a \
                     directory",
                    dir.display()
                ))
            } else {
                err.with_hint(file::hint_for(&e))
            }
        })?;
        Ok(Ledger::reader(dir))
    }

    /// The file store in `dir` for reading: nothing is created (a reader must not create the
    /// directory a typo named); a missing directory reads as empty.
    pub fn reader(dir: &Path) -> Ledger {
        Ledger {
            dir: dir.to_path_buf(),
            store: Store::File,
            unrecorded: Default::default(),
            tap: Default::default(),
        }
    }

    /// Opens the store the config names. The git store fetches its branch into its cache
    /// under the repository's git dir first (exit 2, nothing changed, when the repository,
    /// remote or branch is unusable); that cache is this ledger's directory.
    pub fn open_for(config: &Config) -> Result<Ledger, Error> {
        match config.state.store {
            StoreKind::File => Ledger::open(&config.state.dir),
            StoreKind::Git => {
                let store = git::GitStore::open(config)?;
                store.open_cache(&config.state.dir)?;
                Ok(Ledger {
                    dir: store.cache_dir().to_path_buf(),
                    store: Store::Git(Arc::new(store)),
                    unrecorded: Default::default(),
                    tap: Default::default(),
                })
            }
        }
    }

    /// Takes the deploy lock (SPEC §3) of this store, waiting up to `wait`; exit 5 with the
    /// holder when it stays held, an error as soon as `interrupted()` says so. Behind a
    /// person's manual lock: exit 5 at once, whatever `wait` says; an expired one is cleared.
    pub fn acquire_lock(
        &self,
        info: &lock::LockInfo,
        wait: Option<Duration>,
        interrupted: impl Fn() -> bool,
    ) -> Result<lock::LockGuard, Error> {
        match &self.store {
            Store::File => {
                let guard = lock::acquire_until(&self.dir, info, wait, interrupted)?;
                // Under the flock: a `lock acquire` cannot slip in between this check and the
                // deploy, nor a deploy between its check and its write.
                if let Some(manual) = manual_lock::read(&self.dir)? {
                    if !manual.is_expired() {
                        drop(guard);
                        return Err(manual.held_error(wait));
                    }
                    manual_lock::remove(&self.dir)?;
                    self.cleared_expired(&manual, &info.actor);
                }
                Ok(guard)
            }
            Store::Git(git) => {
                let (lease, expired) = git::acquire(git, info, wait, interrupted)?;
                if let Some(manual) = expired {
                    self.cleared_expired(&manual, &info.actor);
                }
                Ok(lock::LockGuard::git(lease))
            }
        }
    }

    /// `shipgate lock acquire`: holds the deploy lock for a person. Exit 5 while a process or
    /// another unexpired manual lock holds it, naming the holder. Returns the expired manual
    /// lock it replaced, if any (noted and audited here).
    pub fn acquire_manual(
        &self,
        manual: &manual_lock::ManualLock,
    ) -> Result<Option<manual_lock::ManualLock>, Error> {
        let expired = match &self.store {
            Store::File => {
                let info = lock::LockInfo::current("lock acquire", "", &manual.actor);
                let guard = lock::acquire(&self.dir, &info, None)?;
                let expired = match manual_lock::read(&self.dir)? {
                    Some(held) if !held.is_expired() => return Err(held.held_error(None)),
                    old => old,
                };
                manual_lock::write(&self.dir, manual)?;
                drop(guard);
                expired
            }
            Store::Git(git) => git::acquire_manual(git, manual)?,
        };
        if let Some(old) = &expired {
            self.cleared_expired(old, &manual.actor);
        }
        Ok(expired)
    }

    /// An expired manual lock a taker cleared: a note, and an audit record (best effort: the
    /// lock is already free).
    fn cleared_expired(&self, manual: &manual_lock::ManualLock, by: &str) {
        crate::say!(
            "note: cleared an expired manual lock ({})",
            manual.describe()
        );
        let record = manual.audit(
            "manual lock expired",
            format!(
                "the manual lock of {} expired and was cleared by {by}",
                manual.actor
            ),
            Some(("cleared_by", by)),
        );
        if let Err(e) = self.append_audit(&record) {
            crate::say!(
                "warning: could not record the expired manual lock: {}",
                e.message
            );
        }
    }

    /// Whether the deploy lock is held, and by whom (a process, or a person's manual lock).
    pub fn lock_state(&self) -> Result<lock::LockState, Error> {
        match &self.store {
            Store::File => Ok(lock::LockState {
                manual: manual_lock::read(&self.dir)?,
                ..lock::state(&self.dir)?
            }),
            Store::Git(git) => git::state(git),
        }
    }

    /// The process holding the deploy lock, if one holds it now (a manual lock is no process).
    pub fn lock_holder(&self) -> Result<Option<lock::LockInfo>, Error> {
        let s = self.lock_state()?;
        Ok(s.held.then(|| s.info.unwrap_or_default()))
    }

    /// `shipgate lock release [--force]` by `actor`. A manual lock is released without
    /// `--force` (no process is changing anything under it); else the rules of
    /// [`lock::release`].
    pub fn release_lock(&self, force: bool, actor: &str) -> Result<lock::Released, Error> {
        match &self.store {
            Store::File => {
                if manual_lock::read(&self.dir)?.is_some() {
                    let info = lock::LockInfo::current("lock release", "", actor);
                    match lock::acquire(&self.dir, &info, None) {
                        Ok(guard) => {
                            let released = manual_lock::read(&self.dir)?;
                            manual_lock::remove(&self.dir)?;
                            drop(guard);
                            return Ok(match released {
                                Some(manual) => lock::Released::Manual {
                                    expired: manual.is_expired(),
                                    manual,
                                },
                                None => lock::Released::NotHeld,
                            });
                        }
                        // A live process holds the flock: the usual rules name it.
                        Err(e) if e.exit_code() == crate::exit_code::LOCKED => {}
                        Err(e) => return Err(e),
                    }
                }
                lock::release(&self.dir, force)
            }
            Store::Git(git) => git::release(git, force),
        }
    }

    /// Where the lock lives, for `lock status`: the lock file, or the ref on the remote.
    pub fn lock_location(&self) -> String {
        match &self.store {
            Store::File => lock::path(&self.dir).display().to_string(),
            Store::Git(git) => git.lock_location(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, kind: FileKind) -> PathBuf {
        match kind {
            FileKind::History => self.dir.join(HISTORY_FILE),
            FileKind::Audit => self.dir.join(AUDIT_FILE),
        }
    }

    /// Appends one record to the store. A failure is remembered for the whole run
    /// ([`Ledger::cannot_record`]) and returned. A torn final line the append moved aside is
    /// recorded in the audit trail.
    fn append(&self, kind: FileKind, body: serde_json::Value) -> Result<Appended, Error> {
        let result = match &self.store {
            Store::File => jsonl::append(&self.path(kind), body),
            Store::Git(git) => {
                let file = match kind {
                    FileKind::History => HISTORY_FILE,
                    FileKind::Audit => AUDIT_FILE,
                };
                git.append(file, body)
            }
        };
        match result {
            Ok(appended) => {
                if let Some(repair) = &appended.repaired {
                    self.record_repair(repair);
                }
                Ok(appended)
            }
            Err(e) => {
                let mut first = self.unrecorded.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Why this run can no longer record what it does (the first failed append), if it cannot.
    pub fn cannot_record(&self) -> Option<String> {
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The audit record of a torn line moved aside (best effort: a failure is remembered by
    /// [`Ledger::append`] like any other).
    fn record_repair(&self, repair: &jsonl::Repair) {
        let name = repair
            .file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let record = AuditRecord {
            priority: "P2".into(),
            title: format!("repaired a torn final line of {name}"),
            message: format!(
                "{name} ended in a torn line ({} bytes without a newline: a write interrupted by \
                 a crash); its bytes were moved to {} and the file continues from the line \
                 before",
                repair.bytes,
                repair.aside.display()
            ),
            context: serde_json::json!({
                "file": repair.file.display().to_string(),
                "moved_to": repair.aside.display().to_string(),
                "bytes": repair.bytes,
            }),
            ..Default::default()
        };
        let _ = self.append_audit(&record);
    }

    /// Before the lock of a deploy, rollback or recover: every file of the state directory this
    /// run writes can be written, so nothing is changed that cannot be recorded. Exit 2 with the
    /// path and a hint: a file that is not a regular file (a link), an existing ledger file that
    /// cannot be opened for appending (immutable, no permission), and a directory that takes no
    /// new data (read-only, full). The git store checks its remote when it opens.
    pub fn check_writable(&self) -> Result<(), Error> {
        if !matches!(self.store, Store::File) {
            return Ok(());
        }
        for name in STATE_FILES {
            file::ensure_regular_or_missing(&self.dir.join(name))?;
        }
        // History and audit are appended to; `status.json` is replaced, which an immutable or
        // append-only flag forbids as it forbids opening it for writing.
        let status = self.dir.join(STATUS_FILE);
        let checks = [
            (self.path(FileKind::History), true),
            (self.path(FileKind::Audit), true),
            (status, false),
        ];
        for (path, append) in checks {
            let mut opts = std::fs::OpenOptions::new();
            if append {
                opts.append(true);
            } else {
                opts.write(true);
            }
            if let Err(e) = file::open(&path, &mut opts) {
                // Known before anything changed, whatever the cause.
                return Err(Error {
                    code: crate::exit_code::USAGE,
                    ..e
                });
            }
        }
        file::probe_dir(&self.dir)
    }

    /// Appends to `history.jsonl` (redacted, under an exclusive lock, one write, fsync), then
    /// applies a deploy, stage or rollback record to `status.json` ([`status::apply`]). The record
    /// stands even when `status.json` cannot be written: that is a warning in the result, and
    /// the next reader rebuilds the file from history.
    pub fn append_history(&self, record: &HistoryRecord) -> Result<Appended, Error> {
        let body = serde_json::to_value(record).context("cannot encode record")?;
        // The tap is held across the append: what it receives is in history's order, also
        // when the signal thread and the engine append at once.
        let tap = lock_tap(&self.tap);
        let mut appended = self.append(FileKind::History, body)?;
        if let Some(tx) = tap.as_ref() {
            let _ = tx.send(record.clone());
        }
        drop(tap);
        if status::changes_state(record) {
            if let Err(e) = self.apply_to_status() {
                appended.warning = Some(format!("cannot update {STATUS_FILE}: {e}"));
            }
        }
        Ok(appended)
    }

    /// From now on, every history record appended through this ledger (or a clone) is also
    /// sent to `tx`; `None` stops it.
    pub fn tap_history(&self, tx: Option<std::sync::mpsc::Sender<HistoryRecord>>) {
        *lock_tap(&self.tap) = tx;
    }

    /// Brings the records other machines appended into view: the git store fetches its branch
    /// into the cache; the file store is always current.
    pub fn refresh(&self) -> Result<(), Error> {
        match &self.store {
            Store::File => Ok(()),
            Store::Git(git) => git.sync(),
        }
    }

    /// Appends to `audit.jsonl`.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<Appended, Error> {
        let body = serde_json::to_value(record).context("cannot encode record")?;
        self.append(FileKind::Audit, body)
    }

    /// Raw lines of a file, newest first, read backwards in blocks; `None` when the file does
    /// not exist yet.
    pub fn rev_lines(&self, kind: FileKind) -> Result<Option<jsonl::RevLines>, Error> {
        let path = self.path(kind);
        match file::open_read(&path)? {
            Some(f) => {
                Ok(Some(jsonl::RevLines::new(f).with_context(|| {
                    format!("cannot read `{}`", path.display())
                })?))
            }
            None => Ok(None),
        }
    }

    /// Raw lines of a file, oldest first, with a fixed-size buffer.
    pub fn lines(&self, kind: FileKind) -> Result<Option<jsonl::Lines>, Error> {
        Ok(file::open_read(&self.path(kind))?.map(jsonl::Lines::new))
    }

    /// History records, newest first, read lazily backwards from the end of the file. A torn
    /// final line is reported in `warnings` at once; other unparsable lines are skipped (use
    /// [`Ledger::history_rev_checked`] to see them).
    pub fn history_rev(
        &self,
        warnings: &mut Warnings,
    ) -> Result<Box<dyn Iterator<Item = Stored<HistoryRecord>> + '_>, Error> {
        let iter = self.history_rev_checked()?;
        if let Some(w) = iter.torn_tail_warning() {
            warnings.push(w);
        }
        Ok(Box::new(iter.filter_map(Result::ok)))
    }

    /// History records, newest first; a line that cannot be read is an `Err` with the warning.
    pub fn history_rev_checked(&self) -> Result<RevRecords<HistoryRecord>, Error> {
        Ok(RevRecords {
            lines: self.rev_lines(FileKind::History)?,
            file: HISTORY_FILE,
            prefilter: None,
            first: true,
            parse: parse_history_line,
        })
    }

    /// Checks both files' hash chains. With the git store the cache is first rebuilt from the
    /// branch's segments (so nothing local is trusted), and each problem names the segment it
    /// is in; a segment's first line that does not chain to the previous segment's last is a
    /// broken join.
    pub fn verify(&self) -> Result<(Verified, Verified), Error> {
        if let Store::Git(git) = &self.store {
            git.rebuild_cache()?;
        }
        let check = |name: &str, kind: FileKind| -> Result<Verified, Error> {
            let mut v = jsonl::verify(&self.path(kind), kind)?;
            let Store::Git(git) = &self.store else {
                return Ok(v);
            };
            for p in &mut v.problems {
                let Some((segment, line, before)) = git.locate(name, p.line) else {
                    continue;
                };
                p.message = match before {
                    Some(before) if p.message.starts_with("bad prev hash") => format!(
                        "broken join between segments: the first line of `{segment}` does not \
                         chain to the last line of `{before}` ({})",
                        p.message
                    ),
                    _ => format!("{} (`{segment}` line {line})", p.message),
                };
            }
            Ok(v)
        };
        Ok((
            check(HISTORY_FILE, FileKind::History)?,
            check(AUDIT_FILE, FileKind::Audit)?,
        ))
    }

    /// The current state: `status.json` when it is the fold of all of history; one that is
    /// behind (a process killed between an append and the `status.json` write) is brought up
    /// to date from the records after its `last_record`, with a warning; a missing one, or one
    /// an older shipgate wrote, is rebuilt silently, an unreadable one with a warning. Never
    /// writes.
    pub fn status(&self, warnings: &mut Warnings) -> Result<StatusFile, Error> {
        Ok(self.read_status(warnings)?.0)
    }

    /// [`Ledger::status`], and whether the state had to be rebuilt or caught up (so the file
    /// is worth writing). Reads `status.json` and the records after its `last_record` only:
    /// the cost does not grow with history.
    fn read_status(&self, warnings: &mut Warnings) -> Result<(StatusFile, bool), Error> {
        let stale = || {
            format!(
                "{STATUS_FILE} is older than history (a run was killed before writing it); \
                 brought it up to date from history"
            )
        };
        match self.read_status_file()? {
            StatusRead::Current(mut s) => match self.state_records_since(&s.last_record)? {
                Some(newer) if newer.is_empty() => Ok((*s, false)),
                Some(newer) => {
                    warnings.push(stale());
                    for r in &newer {
                        status::apply(&mut s, r);
                    }
                    Ok((*s, true))
                }
                None => {
                    warnings.push(stale());
                    Ok((self.rebuild_status()?, true))
                }
            },
            StatusRead::Missing | StatusRead::Outdated => Ok((self.rebuild_status()?, true)),
            StatusRead::Unusable(why) => {
                warnings.push(format!("{STATUS_FILE} {why}; rebuilt it from history"));
                Ok((self.rebuild_status()?, true))
            }
        }
    }

    /// `status.json` as written, without comparing it with history.
    fn read_status_file(&self) -> Result<StatusRead, Error> {
        let path = self.dir.join(STATUS_FILE);
        let Some(bytes) = file::read(&path)? else {
            return Ok(StatusRead::Missing);
        };
        Ok(match serde_json::from_slice::<serde_json::Value>(&bytes) {
            // shipgate always writes both; `{}` or `[]` would otherwise read as "nothing
            // deployed" and let `status --check` pass without checking anything.
            Ok(v)
                if !v.get("regions").is_some_and(|r| r.is_object())
                    || !v.get("updated_at").is_some_and(|u| u.is_string()) =>
            {
                StatusRead::Unusable("has no `regions` or `updated_at`".into())
            }
            Ok(v) => match serde_json::from_value::<StatusFile>(v) {
                Ok(status) if status.fold < status::FOLD => StatusRead::Outdated,
                Ok(status) => StatusRead::Current(Box::new(status)),
                Err(e) => StatusRead::Unusable(format!("is unreadable ({e})")),
            },
            Err(e) => StatusRead::Unusable(format!("is unreadable ({e})")),
        })
    }

    /// Rebuilds the state from history: the fold of every record, streamed oldest first.
    pub fn rebuild_status(&self) -> Result<StatusFile, Error> {
        let Some(mut lines) = self.lines(FileKind::History)? else {
            return Ok(StatusFile::default());
        };
        let mut err = None;
        let records = std::iter::from_fn(|| loop {
            match lines.next_line() {
                Ok(None) => return None,
                Err(e) => {
                    err = Some(e);
                    return None;
                }
                Ok(Some((_, line, complete))) => {
                    // Gate, event and approval lines do not change the state: skip them unparsed.
                    if !complete || !changes_state_line(line) {
                        continue;
                    }
                    if let Ok(r) = parse_history_line(line) {
                        return Some(r);
                    }
                }
            }
        });
        let status = status::fold(records);
        if let Some(e) = err {
            return Err(Error::failed("cannot read history").caused_by(e));
        }
        Ok(status)
    }

    /// Brings `status.json` up to date after an append, under the status lock: the state
    /// records appended since the file's `last_record` (this one, and any a concurrent writer
    /// appended) are applied oldest first. A missing or unreadable file, or one whose last
    /// record is not found, is rebuilt from history.
    fn apply_to_status(&self) -> Result<(), Error> {
        self.write_status(|ledger| match ledger.read_status_file()? {
            StatusRead::Current(mut s) => match ledger.state_records_since(&s.last_record)? {
                Some(newer) => {
                    for r in &newer {
                        status::apply(&mut s, r);
                    }
                    Ok(*s)
                }
                None => ledger.rebuild_status(),
            },
            _ => ledger.rebuild_status(),
        })
    }

    /// The deploy, stage and rollback records appended after the one with id `last`, oldest
    /// first; `None` when `last` is not in history (then only a rebuild can tell). Reads
    /// backwards, so it costs what was appended since, not the size of history.
    fn state_records_since(&self, last: &str) -> Result<Option<Vec<Stored<HistoryRecord>>>, Error> {
        let Some(mut lines) = self.rev_lines(FileKind::History)? else {
            return Ok(last.is_empty().then(Vec::new));
        };
        #[derive(serde::Deserialize)]
        struct Brief<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let mut newer = Vec::new();
        while let Some((_, line)) = lines.next_line().context("cannot read history")? {
            if !changes_state_line(line) {
                continue;
            }
            let Ok(r) = parse_history_line(line) else {
                if serde_json::from_slice::<Brief>(line).is_ok_and(|b| b.id == last) {
                    return Ok(None);
                }
                continue;
            };
            if r.id == last {
                newer.reverse();
                return Ok(Some(newer));
            }
            if status::changes_state(&r.body) {
                newer.push(r);
            }
            // A file this far behind is cheaper to rebuild than to catch up.
            if newer.len() > 10_000 {
                return Ok(None);
            }
        }
        // Reached the start of history: a file with no last record is the empty state.
        if last.is_empty() {
            newer.reverse();
            return Ok(Some(newer));
        }
        Ok(None)
    }

    /// Takes the status lock, computes the new state with `next`, and replaces the file.
    fn write_status(
        &self,
        next: impl Fn(&Ledger) -> Result<StatusFile, Error>,
    ) -> Result<(), Error> {
        match &self.store {
            Store::File => {
                let lock_path = self.dir.join("status.lock");
                let lock = file::open(
                    &lock_path,
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true),
                )?
                .ok_or_else(|| Error::failed(format!("cannot create `{}`", lock_path.display())))?;
                lock.lock()
                    .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
                let text = encode_status(&next(self)?)?;
                self.replace_status_file(&text)
            }
            Store::Git(git) => {
                // Computed from the cache at the tip the commit goes on, without a fetch (a
                // rejected push brings the new tip, and it is computed again); a later change
                // to `status.json` by someone else is overwritten (see `GitStore::replace`):
                // it is a fold of the same history, so nothing is lost.
                git.replace(STATUS_FILE, || encode_status(&next(self)?))
            }
        }
    }

    /// Atomically rewrites the file store's `status.json` (temp, fsync, rename, fsync dir).
    fn replace_status_file(&self, text: &[u8]) -> Result<(), Error> {
        let tmp = self
            .dir
            .join(format!(".{STATUS_FILE}.{}.tmp", std::process::id()));
        // A leftover of a killed run with the same pid (containers reuse pids) goes first.
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(STATUS_FILE))
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::failed(format!("cannot write `{STATUS_FILE}`")).caused_by(e));
        }
        jsonl::sync_dir(&self.dir);
        Ok(())
    }

    /// Versions known good in `region`, newest first, consecutive duplicates collapsed: a
    /// stage that passed its gates there, of a deploy that did not end rolled back, failed or
    /// cancelled, or a rollback that returned the region there. A version the region was later
    /// rolled back from no longer counts (unless deployed successfully again afterwards).
    /// For `rollback` without `--to`.
    pub fn successful_versions(&self, region: &str) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::new();
        let mut bad_deploys = std::collections::HashSet::new();
        let mut rolled_back_from = std::collections::HashSet::new();
        for r in self.history_rev_checked()?.filter_map(Result::ok) {
            let v = match &r.body {
                HistoryRecord::Deploy(d) => {
                    if d.status.is_bad() {
                        bad_deploys.insert(d.deploy_id.clone());
                    }
                    None
                }
                HistoryRecord::Stage(s)
                    if !bad_deploys.contains(&s.deploy_id)
                        && s.regions_detail
                            .get(region)
                            .is_some_and(|d| d.status == RegionState::Success) =>
                {
                    Some(s.version.clone())
                }
                // `to_version` lists only the regions that really went back (and verified).
                HistoryRecord::Rollback(rb) => match rb.to_version.get(region) {
                    Some(to) => {
                        if let Some(from) = rb.from_version.get(region) {
                            rolled_back_from.insert(from.clone());
                        }
                        Some(to.clone())
                    }
                    None => None,
                },
                _ => None,
            };
            if let Some(v) = v {
                if !rolled_back_from.contains(&v) && out.last() != Some(&v) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Whether `version` is known good somewhere (for `rollback --to`): a stage of a deploy
    /// that did not end badly passed its gates with it, or a rollback returned a region to it.
    pub fn has_successful_deploy(&self, version: &str) -> Result<bool, Error> {
        let mut bad_deploys = std::collections::HashSet::new();
        for r in self.history_rev_checked()?.filter_map(Result::ok) {
            match &r.body {
                HistoryRecord::Deploy(d) if d.status.is_bad() => {
                    bad_deploys.insert(d.deploy_id.clone());
                }
                HistoryRecord::Stage(s)
                    if s.version == version
                        && !bad_deploys.contains(&s.deploy_id)
                        && s.regions_detail
                            .values()
                            .any(|d| d.status == RegionState::Success) =>
                {
                    return Ok(true)
                }
                HistoryRecord::Rollback(rb) if rb.to_version.values().any(|v| v == version) => {
                    return Ok(true)
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// [`Ledger::status`], and when `status.json` is missing, unreadable or stale, the rebuilt
    /// state is written (under the status lock) so the next reader does not rebuild again. A
    /// read-only state directory is fine: the rebuilt state is returned all the same.
    pub fn status_restored(&self, warnings: &mut Warnings) -> Result<StatusFile, Error> {
        let (status, rebuilt) = self.read_status(warnings)?;
        if rebuilt && self.dir.is_dir() && status != StatusFile::default() {
            // Under the lock: the state just rebuilt, plus whatever was appended since.
            let _ = self.write_status(|ledger| {
                let mut s = status.clone();
                match ledger.state_records_since(&s.last_record)? {
                    Some(newer) => {
                        for r in &newer {
                            status::apply(&mut s, r);
                        }
                        Ok(s)
                    }
                    None => ledger.rebuild_status(),
                }
            });
        }
        Ok(status)
    }
}

/// What reading `status.json` found.
enum StatusRead {
    Current(Box<StatusFile>),
    Missing,
    /// Written by an older reducer ([`status::FOLD`]): it lacks what the current one keeps.
    Outdated,
    Unusable(String),
}

/// `status.json`'s bytes: pretty JSON, redacted, with a final newline.
fn encode_status(status: &StatusFile) -> Result<Vec<u8>, Error> {
    let mut value = serde_json::to_value(status).context("cannot encode status")?;
    crate::redact::redact_json(&mut value);
    let mut text = serde_json::to_vec_pretty(&value).context("cannot encode status")?;
    text.push(b'\n');
    Ok(text)
}

/// Whether a raw line may change the state: gate, event and approval lines never do
/// ([`status::changes_state`]).
fn changes_state_line(line: &[u8]) -> bool {
    !(is_kind(line, "gate") || is_kind(line, "event") || is_kind(line, "approval"))
}

/// Whether a raw line is of this kind (`"kind":"gate"`, as the ledger writes it).
fn is_kind(line: &[u8], kind: &str) -> bool {
    memchr::memmem::find(line, format!("\"kind\":\"{kind}\"").as_bytes()).is_some()
}

/// Parses one history line. Same result as `serde_json::from_slice::<Stored<HistoryRecord>>`,
/// several times faster: the envelope and `kind` are read first (everything else skipped), then
/// the body straight into its record type, instead of buffering the whole line for `flatten`
/// and the `kind` tag.
pub fn parse_history_line(line: &[u8]) -> Result<Stored<HistoryRecord>, serde_json::Error> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        schema: u32,
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        ts: Cow<'a, str>,
        #[serde(borrow)]
        prev: Cow<'a, str>,
        #[serde(borrow)]
        kind: Cow<'a, str>,
    }
    let env: Envelope = serde_json::from_slice(line)?;
    let body = match env.kind.as_ref() {
        "deploy" => HistoryRecord::Deploy(serde_json::from_slice(line)?),
        "stage" => HistoryRecord::Stage(serde_json::from_slice(line)?),
        "gate" => HistoryRecord::Gate(serde_json::from_slice(line)?),
        "rollback" => HistoryRecord::Rollback(serde_json::from_slice(line)?),
        "event" => HistoryRecord::Event(serde_json::from_slice(line)?),
        "approval" => HistoryRecord::Approval(serde_json::from_slice(line)?),
        // An unknown kind: let serde say so.
        _ => return serde_json::from_slice(line),
    };
    Ok(Stored {
        schema: env.schema,
        id: env.id.into_owned(),
        ts: env.ts.into_owned(),
        prev: env.prev.into_owned(),
        body,
    })
}

/// Typed records newest first. Unreadable lines come out as `Err(warning)`.
pub struct RevRecords<T> {
    lines: Option<jsonl::RevLines>,
    file: &'static str,
    /// Lines without these substrings are skipped unparsed.
    pub prefilter: Option<query::Prefilter>,
    first: bool,
    parse: fn(&[u8]) -> Result<Stored<T>, serde_json::Error>,
}

impl<T> RevRecords<T> {
    /// The warning for a torn final line, if the file has one.
    pub fn torn_tail_warning(&self) -> Option<String> {
        self.lines
            .as_ref()
            .filter(|l| l.torn_tail)
            .map(|_| torn_warning(self.file))
    }
}

/// The warning readers give for a torn final line.
pub fn torn_warning(file: &str) -> String {
    format!(
        "{file}: skipped a torn final line (a write was interrupted by a crash); \
         `shipgate history verify` reports it"
    )
}

impl<T> Iterator for RevRecords<T> {
    type Item = Result<Stored<T>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let lines = self.lines.as_mut()?;
        loop {
            let torn = std::mem::take(&mut self.first) && lines.torn_tail;
            let (offset, line) = match lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => {
                    self.lines = None;
                    return Some(Err(format!("{}: cannot read: {e}", self.file)));
                }
            };
            if torn {
                return Some(Err(torn_warning(self.file)));
            }
            if let Some(p) = &self.prefilter {
                if !p.may_match(line) {
                    continue;
                }
            }
            return Some((self.parse)(line).map_err(|e| {
                format!(
                    "{}: skipped an unreadable line at byte {offset}: {e}",
                    self.file
                )
            }));
        }
    }
}

fn lock_tap<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(id: &str, status: &str) -> HistoryRecord {
        HistoryRecord::Deploy(DeployRecord {
            deploy_id: id.into(),
            version: "v1".into(),
            status: serde_json::from_value(serde_json::json!(status)).unwrap(),
            ..Default::default()
        })
    }

    #[test]
    fn appends_chain_and_read_back_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        for i in 0..5 {
            ledger
                .append_history(&deploy(&format!("d{i}"), "started"))
                .unwrap();
        }
        let ids: Vec<_> = ledger
            .history_rev(&mut Vec::new())
            .unwrap()
            .map(|r| r.body.deploy_id().unwrap().to_string())
            .collect();
        assert_eq!(ids, vec!["d4", "d3", "d2", "d1", "d0"]);
        let (h, a) = ledger.verify().unwrap();
        assert_eq!((h.lines, h.problems.len()), (5, 0));
        assert_eq!(a.lines, 0);
        let text = std::fs::read_to_string(ledger.path(FileKind::History)).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], jsonl::GENESIS);
        assert_eq!(first["schema"], 1);
    }

    #[test]
    fn a_torn_line_is_skipped_by_readers_and_moved_aside_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.append_history(&deploy("d0", "started")).unwrap();
        let path = ledger.path(FileKind::History);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"schema\":1,\"id\":\"torn").unwrap();
        let mut warnings = Vec::new();
        let n = ledger.history_rev(&mut warnings).unwrap().count();
        assert_eq!((n, warnings.len()), (1, 1));
        ledger.append_history(&deploy("d1", "success")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("torn"), "{text}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("history.jsonl.torn-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap(),
            b"{\"schema\":1,\"id\":\"torn"
        );
        let (h, a) = ledger.verify().unwrap();
        assert!(h.problems.is_empty(), "{:?}", h.problems);
        assert_eq!(h.repairs.len(), 1, "{:?}", h.repairs);
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        let audit = std::fs::read_to_string(ledger.path(FileKind::Audit)).unwrap();
        assert!(audit.contains("torn"), "{audit}");
    }

    #[test]
    fn a_whole_record_that_lost_only_its_newline_is_kept_and_chained() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.append_history(&deploy("d0", "started")).unwrap();
        ledger.append_history(&deploy("d0", "success")).unwrap();
        let path = ledger.path(FileKind::History);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        ledger.append_history(&deploy("d1", "started")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("\"success\""), "{text}");
        let (h, _) = ledger.verify().unwrap();
        assert!(h.problems.is_empty(), "{:?}", h.problems);
        assert!(h.repairs.is_empty(), "{:?}", h.repairs);
    }

    #[test]
    fn every_append_keeps_status_json_the_fold_of_history() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.append_history(&deploy("d0", "started")).unwrap();
        ledger
            .append_history(&HistoryRecord::Gate(GateRecord::default()))
            .unwrap();
        ledger.append_history(&deploy("d0", "success")).unwrap();
        let written: StatusFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATUS_FILE)).unwrap()).unwrap();
        assert_eq!(written, ledger.rebuild_status().unwrap());
        assert_eq!(written.last_deploy.unwrap().status, DeployStatus::Success);
    }

    #[test]
    fn a_stale_status_json_is_rebuilt_by_readers_and_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.append_history(&deploy("d0", "started")).unwrap();
        let stale = std::fs::read(dir.path().join(STATUS_FILE)).unwrap();
        ledger.append_history(&deploy("d0", "success")).unwrap();
        // A kill between an append and the status.json write leaves the older file.
        std::fs::write(dir.path().join(STATUS_FILE), &stale).unwrap();
        let mut warnings = Vec::new();
        let s = ledger.status(&mut warnings).unwrap();
        assert_eq!(s.last_deploy.unwrap().status, DeployStatus::Success);
        assert!(warnings[0].contains("older than history"), "{warnings:?}");
        ledger.append_history(&deploy("d1", "started")).unwrap();
        let written: StatusFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATUS_FILE)).unwrap()).unwrap();
        assert_eq!(written, ledger.rebuild_status().unwrap());
    }

    #[test]
    fn the_fast_line_parser_agrees_with_serde() {
        let records = [
            deploy("d0", "started"),
            HistoryRecord::Stage(StageRecord {
                deploy_id: "d0".into(),
                stage: "canary".into(),
                regions_detail: [("lhr".to_string(), RegionDetail::default())].into(),
                ..Default::default()
            }),
            HistoryRecord::Gate(GateRecord {
                gate: "api".into(),
                result: "tripped".into(),
                ..Default::default()
            }),
            HistoryRecord::Rollback(RollbackRecord::default()),
            HistoryRecord::Event(EventRecord {
                event: serde_json::json!({"event_type": "start"}),
                ..Default::default()
            }),
        ];
        for body in records {
            let stored = Stored {
                schema: 1,
                id: "01J".into(),
                ts: "2026-01-01T00:00:00Z".into(),
                prev: jsonl::GENESIS.into(),
                body,
            };
            let line = serde_json::to_vec(&stored).unwrap();
            let fast = parse_history_line(&line).unwrap();
            let slow: Stored<HistoryRecord> = serde_json::from_slice(&line).unwrap();
            assert_eq!(fast.body, slow.body);
            assert_eq!((fast.id, fast.ts, fast.prev), (slow.id, slow.ts, slow.prev));
        }
        assert!(
            parse_history_line(br#"{"schema":1,"id":"x","ts":"t","prev":"p","kind":"nope"}"#)
                .is_err()
        );
        assert!(parse_history_line(br#"{"schema":1,"id":"x","ts":"t","kind":"deploy"}"#).is_err());
    }

    #[test]
    fn the_fold_keeps_deploys_that_never_finished_since_the_last_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let at = |id: &str, status: &str, minute: u32| match deploy(id, status) {
            HistoryRecord::Deploy(d) => HistoryRecord::Deploy(DeployRecord {
                start_time: format!("2026-01-01T00:{minute:02}:00Z"),
                ..d
            }),
            _ => unreachable!(),
        };
        // d0 was killed and then followed by a finished deploy: history, not the state.
        ledger.append_history(&at("d0", "started", 0)).unwrap();
        ledger.append_history(&at("d1", "started", 1)).unwrap();
        ledger.append_history(&at("d1", "success", 1)).unwrap();
        ledger.append_history(&at("d2", "started", 2)).unwrap();
        ledger.append_history(&at("d2", "cancelling", 2)).unwrap();
        ledger.append_history(&at("d3", "started", 3)).unwrap();
        let open = |s: &StatusFile| -> Vec<(String, DeployStatus)> {
            s.open_deploys
                .iter()
                .map(|d| (d.deploy_id.clone(), d.status))
                .collect()
        };
        let written = ledger.status(&mut Vec::new()).unwrap();
        assert_eq!(
            open(&written),
            vec![
                ("d2".to_string(), DeployStatus::Cancelling),
                ("d3".to_string(), DeployStatus::Started)
            ]
        );
        assert_eq!(written, ledger.rebuild_status().unwrap());
        // A late final record of an interrupted deploy (`recover`) closes it alone.
        ledger.append_history(&at("d2", "rolled_back", 2)).unwrap();
        let s = ledger.status(&mut Vec::new()).unwrap();
        assert_eq!(open(&s), vec![("d3".to_string(), DeployStatus::Started)]);
        ledger.append_history(&at("d3", "success", 3)).unwrap();
        assert!(ledger
            .status(&mut Vec::new())
            .unwrap()
            .open_deploys
            .is_empty());
    }
}
