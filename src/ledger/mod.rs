//! The ledger (SPEC §4): append-only, hash-chained JSONL history and audit trail, the atomic
//! `status.json`, and the deploy lock.

pub mod lock;
pub mod records;

use std::path::{Path, PathBuf};

use crate::error::Error;
pub use records::*;

/// A warning found while reading (a torn final line, say), shown to the user.
pub type Warnings = Vec<String>;

/// The state directory: `history.jsonl`, `audit.jsonl`, `status.json`, `lock`.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

/// What an append wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: String,
    pub ts: String,
}

impl Ledger {
    /// Opens (creating when missing) the state directory.
    pub fn open(dir: &Path) -> Result<Ledger, Error> {
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends to `history.jsonl` (redacted, under an exclusive lock, one write, fsync).
    pub fn append_history(&self, record: &HistoryRecord) -> Result<Appended, Error> {
        let _ = record;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// Appends to `audit.jsonl`.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<Appended, Error> {
        let _ = record;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// History records, newest first, reading backwards from the end of the file. Torn or
    /// unparsable lines are skipped and reported in `warnings`.
    pub fn history_rev(
        &self,
        warnings: &mut Warnings,
    ) -> Result<Box<dyn Iterator<Item = Stored<HistoryRecord>> + '_>, Error> {
        let _ = warnings;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// The current state: `status.json`, or rebuilt from history when it is missing.
    pub fn status(&self, warnings: &mut Warnings) -> Result<StatusFile, Error> {
        let _ = warnings;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// Reads, changes and atomically rewrites `status.json` (temp, fsync, rename).
    pub fn update_status(&self, change: impl FnOnce(&mut StatusFile)) -> Result<(), Error> {
        let _ = change;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// Versions successfully deployed to (or rolled back to in) `region`, newest first,
    /// consecutive duplicates collapsed. For `rollback` without `--to`.
    pub fn successful_versions(&self, region: &str) -> Result<Vec<String>, Error> {
        let _ = region;
        Err(Error::failed("the ledger is not implemented yet"))
    }

    /// Whether `version` was ever deployed successfully to any region (for `rollback --to`).
    pub fn has_successful_deploy(&self, version: &str) -> Result<bool, Error> {
        let _ = version;
        Err(Error::failed("the ledger is not implemented yet"))
    }
}
