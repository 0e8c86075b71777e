//! The git store's local cache: the branch's ledger as plain files, in
//! `<git dir>/shipgate/<remote>/<branch>/` (outside the work tree, so `git status` stays
//! clean), for every reader to read exactly as with the file store: `history.jsonl` and
//! `audit.jsonl` are the concatenation of their segments ([`super::segments`]), `status.json`
//! the branch's.
//!
//! **Incremental.** A small manifest (`manifest`) names the commit the cache holds and, per
//! segment, its blob id, length and number of lines. Bringing the cache to another commit
//! compares that commit's segments with the manifest: earlier segments are immutable, so their
//! blob ids must match; the segment that was last may only have grown (its old bytes must be
//! the start of its new ones, checked against the cache's own tail); new segments follow. Only
//! the new bytes are appended. Anything else (a force-pushed branch, a cache edited or cut
//! short locally, a missing manifest) rebuilds that file from the tree. A cache that already
//! holds a descendant of the commit (another process of this clone moved it on) is left alone.
//!
//! Updates are serialised by an `flock` on `.lock` in the cache; appends are single writes and
//! rebuilds replace the file atomically, so readers never see a torn mix.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Tree};

use super::segments::{self, Segment};
use super::{AUDIT_FILE, HISTORY_FILE, STATUS_FILE};
use crate::error::Error;

const MANIFEST: &str = "manifest";
const MANIFEST_HEADER: &str = "shipgate git-store cache 1";

/// The ledger files kept as segments.
const LEDGER_FILES: [&str; 2] = [HISTORY_FILE, AUDIT_FILE];

/// One segment as the cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub blob: Oid,
    pub len: u64,
    /// Newlines in the segment.
    pub lines: u64,
}

/// What the cache holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// `None`: the branch did not exist.
    pub commit: Option<Oid>,
    pub status: Option<Oid>,
    pub files: BTreeMap<String, Vec<Entry>>,
}

impl Manifest {
    fn encode(&self) -> String {
        let oid = |o: Option<Oid>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
        let mut s = format!(
            "{MANIFEST_HEADER}\ncommit {}\nstatus {}\n",
            oid(self.commit),
            oid(self.status)
        );
        for (file, entries) in &self.files {
            for e in entries {
                s.push_str(&format!(
                    "segment {file} {} {} {} {}\n",
                    e.blob, e.len, e.lines, e.path
                ));
            }
        }
        s
    }

    fn decode(text: &str) -> Option<Manifest> {
        let mut lines = text.lines();
        if lines.next()? != MANIFEST_HEADER {
            return None;
        }
        let oid = |s: &str| -> Option<Option<Oid>> {
            if s == "-" {
                Some(None)
            } else {
                Oid::from_str(s).ok().map(Some)
            }
        };
        let commit = oid(lines.next()?.strip_prefix("commit ")?)?;
        let status = oid(lines.next()?.strip_prefix("status ")?)?;
        let mut files: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for line in lines {
            let mut parts = line.strip_prefix("segment ")?.splitn(5, ' ');
            let file = parts.next()?.to_string();
            let entry = Entry {
                blob: Oid::from_str(parts.next()?).ok()?,
                len: parts.next()?.parse().ok()?,
                lines: parts.next()?.parse().ok()?,
                path: parts.next()?.to_string(),
            };
            files.entry(file).or_default().push(entry);
        }
        Some(Manifest {
            commit,
            status,
            files,
        })
    }
}

/// The cache directory of one remote branch.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of `branch` of `remote` in the repository whose (common) git dir is `git_dir`.
    pub fn new(git_dir: &Path, remote: &str, branch: &str) -> Cache {
        // A remote name may hold a `/`; a branch's `/` nests (git refuses `a` beside `a/b`).
        let remote = remote.replace('%', "%25").replace('/', "%2F");
        let mut dir = git_dir.join("shipgate").join(remote);
        for part in branch.split('/') {
            dir.push(part);
        }
        Cache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::failed(format!(
            "cannot write the git store's cache `{}`",
            self.dir.display()
        ))
        .caused_by(e)
    }

    /// What the cache holds now (`None`: nothing usable).
    pub fn manifest(&self) -> Option<Manifest> {
        let bytes = super::file::read(&self.dir.join(MANIFEST)).ok()??;
        Manifest::decode(std::str::from_utf8(&bytes).ok()?)
    }

    /// Brings the cache to `commit` (`None`: the branch does not exist), appending only what is
    /// new. `rebuild`: write every file from the tree whatever the manifest says.
    pub fn update(
        &self,
        repo: &Repository,
        commit: Option<Oid>,
        rebuild: bool,
    ) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let _lock = lock(&self.dir.join(".lock")).map_err(|e| self.io(e))?;
        let old = if rebuild { None } else { self.manifest() };
        if let Some(old) = &old {
            if old.commit == commit {
                return Ok(());
            }
            if let (Some(held), Some(target)) = (old.commit, commit) {
                if repo.graph_descendant_of(held, target).unwrap_or(false) {
                    return Ok(());
                }
            }
        }
        let tree = match commit {
            Some(oid) => Some(repo.find_commit(oid).and_then(|c| c.tree()).map_err(|e| {
                Error::failed("cannot read the ledger branch").caused_by(e.message())
            })?),
            None => None,
        };
        let mut next = Manifest {
            commit,
            ..Manifest::default()
        };
        for file in LEDGER_FILES {
            let segs = segments::list(repo, tree.as_ref(), file)?;
            let before = old.as_ref().and_then(|m| m.files.get(file));
            let entries = match self.append_new(repo, file, before, &segs)? {
                Some(entries) => entries,
                None => self.rebuild_file(repo, file, &segs)?,
            };
            if !entries.is_empty() {
                next.files.insert(file.to_string(), entries);
            }
        }
        next.status = self.update_status(repo, tree.as_ref(), old.as_ref())?;
        self.write_atomically(MANIFEST, next.encode().as_bytes())
    }

    /// The entries after appending what `segs` has beyond `before` to the cached file, or
    /// `None` when that is not an append (then the file is rebuilt).
    fn append_new(
        &self,
        repo: &Repository,
        file: &str,
        before: Option<&Vec<Entry>>,
        segs: &[Segment],
    ) -> Result<Option<Vec<Entry>>, Error> {
        let path = self.dir.join(file);
        let before: &[Entry] = before.map_or(&[], Vec::as_slice);
        let held = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(self.io(e)),
        };
        if held != before.iter().map(|e| e.len).sum::<u64>() || segs.len() < before.len() {
            return Ok(None);
        }
        if segs.is_empty() {
            return Ok((held == 0).then(Vec::new));
        }
        let mut entries = Vec::with_capacity(segs.len());
        let mut new_bytes = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let Some(old) = before.get(i) else {
                let bytes = segments::read_blob(repo, seg.blob, &seg.path)?;
                entries.push(entry_of(seg, &bytes));
                new_bytes.extend_from_slice(&bytes);
                continue;
            };
            if old.path != seg.path {
                return Ok(None);
            }
            if old.blob == seg.blob {
                entries.push(old.clone());
                continue;
            }
            // Only the segment that was last may change, and only by growing.
            if i + 1 != before.len() {
                return Ok(None);
            }
            let bytes = segments::read_blob(repo, seg.blob, &seg.path)?;
            let old_len = usize::try_from(old.len).unwrap_or(usize::MAX);
            if bytes.len() < old_len || !self.tail_is(&path, held, &bytes[..old_len])? {
                return Ok(None);
            }
            entries.push(entry_of(seg, &bytes));
            new_bytes.extend_from_slice(&bytes[old_len..]);
        }
        if !new_bytes.is_empty() {
            let mut f =
                super::file::open(&path, std::fs::OpenOptions::new().create(true).append(true))?
                    .ok_or_else(|| Error::failed(format!("cannot create `{}`", path.display())))?;
            if let Err(e) = f.write_all(&new_bytes) {
                // Cut back to what the manifest says, so the next update sees a consistent file.
                let _ = f.set_len(held);
                return Err(self.io(e));
            }
        }
        Ok(Some(entries))
    }

    /// Whether the cached file (of length `held`) ends in `expected`.
    fn tail_is(&self, path: &Path, held: u64, expected: &[u8]) -> Result<bool, Error> {
        let len = expected.len() as u64;
        if len > held {
            return Ok(false);
        }
        let Some(mut f) = super::file::open_read(path)? else {
            return Ok(expected.is_empty());
        };
        let mut tail = vec![0; expected.len()];
        f.seek(SeekFrom::Start(held - len))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(|e| self.io(e))?;
        Ok(tail == expected)
    }

    /// Writes `file` anew from its segments (temp, rename); removes it when it has none.
    fn rebuild_file(
        &self,
        repo: &Repository,
        file: &str,
        segs: &[Segment],
    ) -> Result<Vec<Entry>, Error> {
        let path = self.dir.join(file);
        super::file::ensure_regular_or_missing(&path)?;
        if segs.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(e)),
                _ => Ok(Vec::new()),
            };
        }
        let tmp = self.tmp_name(file);
        let mut entries = Vec::with_capacity(segs.len());
        let mut write = || -> Result<(), Error> {
            let mut f = std::io::BufWriter::new(create_new(&tmp).map_err(|e| self.io(e))?);
            for seg in segs {
                let bytes = segments::read_blob(repo, seg.blob, &seg.path)?;
                entries.push(entry_of(seg, &bytes));
                f.write_all(&bytes).map_err(|e| self.io(e))?;
            }
            f.flush().map_err(|e| self.io(e))?;
            std::fs::rename(&tmp, &path).map_err(|e| self.io(e))
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(entries)
    }

    /// Writes `status.json` when its blob changed; returns the blob the cache now holds.
    fn update_status(
        &self,
        repo: &Repository,
        tree: Option<&Tree>,
        old: Option<&Manifest>,
    ) -> Result<Option<Oid>, Error> {
        let path = self.dir.join(STATUS_FILE);
        super::file::ensure_regular_or_missing(&path)?;
        let blob = tree.and_then(|t| t.get_name(STATUS_FILE)).map(|e| e.id());
        match blob {
            Some(oid) => {
                if old.is_some_and(|m| m.status == Some(oid)) && path.exists() {
                    return Ok(blob);
                }
                let bytes = segments::read_blob(repo, oid, STATUS_FILE)?;
                self.write_atomically(STATUS_FILE, &bytes)?;
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(self.io(e)),
                _ => {}
            },
        }
        Ok(blob)
    }

    fn tmp_name(&self, name: &str) -> PathBuf {
        self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            fastrand::u32(..)
        ))
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(name);
        super::file::ensure_regular_or_missing(&path)?;
        let tmp = self.tmp_name(name);
        let write = || -> std::io::Result<()> {
            create_new(&tmp)?.write_all(bytes)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(e)
        })
    }

    /// Where line `line` (1-based) of the cached `file` is on the branch: the segment's path,
    /// the line's number in it, and the segment before it (when the line is a segment's first).
    pub fn locate(&self, file: &str, line: u64) -> Option<(String, u64, Option<String>)> {
        let manifest = self.manifest()?;
        let entries = manifest.files.get(file)?;
        let mut before = 0;
        for (i, e) in entries.iter().enumerate() {
            let last = i + 1 == entries.len();
            if line <= before + e.lines || last {
                let n = line - before;
                let prev = (n == 1 && i > 0).then(|| entries[i - 1].path.clone());
                return Some((e.path.clone(), n, prev));
            }
            before += e.lines;
        }
        None
    }
}

fn entry_of(seg: &Segment, bytes: &[u8]) -> Entry {
    Entry {
        path: seg.path.clone(),
        blob: seg.blob,
        len: bytes.len() as u64,
        lines: memchr::memchr_iter(b'\n', bytes).count() as u64,
    }
}

fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// An exclusive `flock` on `path` (created if missing), held until the file is dropped.
fn lock(path: &Path) -> std::io::Result<std::fs::File> {
    let file = super::file::open(
        path,
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .map_err(|e| std::io::Error::other(e.message))?
    .ok_or_else(|| std::io::Error::other("cannot create the cache's lock file"))?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips() {
        let oid = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
        let mut m = Manifest {
            commit: Some(oid),
            status: None,
            files: BTreeMap::new(),
        };
        m.files.insert(
            HISTORY_FILE.into(),
            vec![Entry {
                path: "history/000/000000.jsonl".into(),
                blob: oid,
                len: 10,
                lines: 2,
            }],
        );
        assert_eq!(Manifest::decode(&m.encode()), Some(m));
        assert_eq!(Manifest::decode("garbage"), None);
    }

    #[test]
    fn a_cache_dir_is_per_remote_and_branch() {
        let c = Cache::new(Path::new("/r/.git"), "up/stream", "shipgate/ledger");
        assert_eq!(
            c.dir(),
            Path::new("/r/.git/shipgate/up%2Fstream/shipgate/ledger")
        );
    }
}
