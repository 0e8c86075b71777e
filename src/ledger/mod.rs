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
    // A simple first version (whole-file reads, no file lock): the ledger issue replaces it with
    // locked appends, a reverse reader and torn-line handling, keeping these signatures.

    /// Opens (creating when missing) the state directory.
    pub fn open(dir: &Path) -> Result<Ledger, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::failed(format!("cannot create state directory `{}`", dir.display())).caused_by(e)
        })?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn append_line(&self, file: &str, body: serde_json::Value) -> Result<Appended, Error> {
        use sha2::Digest;
        use std::io::Write;
        let path = self.dir.join(file);
        let existing = std::fs::read(&path).unwrap_or_default();
        let last = existing.split(|b| *b == b'\n').rfind(|l| !l.is_empty());
        let prev = match last {
            Some(line) => hex::encode(sha2::Sha256::digest(line)),
            None => "0".repeat(64),
        };
        let id = ulid::Ulid::new().to_string();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut obj = serde_json::Map::new();
        obj.insert("schema".into(), SCHEMA.into());
        obj.insert("id".into(), id.clone().into());
        obj.insert("ts".into(), ts.clone().into());
        obj.insert("prev".into(), prev.into());
        if let serde_json::Value::Object(body) = body {
            obj.extend(body);
        }
        let mut value = serde_json::Value::Object(obj);
        crate::redact::redact_json(&mut value);
        let mut line = serde_json::to_string(&value)
            .map_err(|e| Error::failed("cannot encode record").caused_by(e))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
        Ok(Appended { id, ts })
    }

    /// Appends to `history.jsonl` (redacted, under an exclusive lock, one write, fsync).
    pub fn append_history(&self, record: &HistoryRecord) -> Result<Appended, Error> {
        let body = serde_json::to_value(record)
            .map_err(|e| Error::failed("cannot encode record").caused_by(e))?;
        self.append_line("history.jsonl", body)
    }

    /// Appends to `audit.jsonl`.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<Appended, Error> {
        let body = serde_json::to_value(record)
            .map_err(|e| Error::failed("cannot encode record").caused_by(e))?;
        self.append_line("audit.jsonl", body)
    }

    /// History records, newest first, reading backwards from the end of the file. Torn or
    /// unparsable lines are skipped and reported in `warnings`.
    pub fn history_rev(
        &self,
        warnings: &mut Warnings,
    ) -> Result<Box<dyn Iterator<Item = Stored<HistoryRecord>> + '_>, Error> {
        let text = std::fs::read_to_string(self.dir.join("history.jsonl")).unwrap_or_default();
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str::<Stored<HistoryRecord>>(line) {
                Ok(r) => out.push(r),
                Err(e) => warnings.push(format!("history.jsonl line {}: skipped: {e}", i + 1)),
            }
        }
        out.reverse();
        Ok(Box::new(out.into_iter()))
    }

    /// The current state: `status.json`, or rebuilt from history when it is missing.
    pub fn status(&self, warnings: &mut Warnings) -> Result<StatusFile, Error> {
        let _ = warnings;
        match std::fs::read_to_string(self.dir.join("status.json")) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| Error::failed("cannot read status.json").caused_by(e)),
            Err(_) => Ok(StatusFile::default()),
        }
    }

    /// Reads, changes and atomically rewrites `status.json` (temp, fsync, rename).
    pub fn update_status(&self, change: impl FnOnce(&mut StatusFile)) -> Result<(), Error> {
        let mut status = self.status(&mut Vec::new())?;
        change(&mut status);
        status.updated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let tmp = self.dir.join("status.json.tmp");
        let text = serde_json::to_string_pretty(&status)
            .map_err(|e| Error::failed("cannot encode status").caused_by(e))?;
        std::fs::write(&tmp, crate::redact::redact(&text))?;
        std::fs::rename(&tmp, self.dir.join("status.json"))?;
        Ok(())
    }

    /// Versions successfully deployed to (or rolled back to in) `region`, newest first,
    /// consecutive duplicates collapsed. For `rollback` without `--to`.
    pub fn successful_versions(&self, region: &str) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::new();
        for r in self.history_rev(&mut Vec::new())? {
            let v = match &r.body {
                HistoryRecord::Stage(s)
                    if s.regions_detail
                        .get(region)
                        .is_some_and(|d| d.status == "success") =>
                {
                    Some(s.version.clone())
                }
                HistoryRecord::Rollback(rb) if rb.status == "success" => {
                    rb.to_version.get(region).cloned()
                }
                _ => None,
            };
            if let Some(v) = v {
                if out.last() != Some(&v) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Whether `version` was ever deployed successfully to any region (for `rollback --to`).
    pub fn has_successful_deploy(&self, version: &str) -> Result<bool, Error> {
        Ok(self.history_rev(&mut Vec::new())?.any(|r| match &r.body {
            HistoryRecord::Stage(s) => {
                s.version == version && s.regions_detail.values().any(|d| d.status == "success")
            }
            _ => false,
        }))
    }
}
