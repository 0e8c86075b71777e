//! One hash-chained JSONL file: the locked append, the reverse reader, the forward scan and the
//! chain check. Nothing here ever reads a whole file into memory.
//!
//! **Torn lines.** A crash can leave a final line without its newline. Readers skip it with a
//! warning, and `verify` reports it. A whole record that lost only its newline (it parses and
//! chains) is kept: the next append writes the newline first. Otherwise the next append moves
//! its bytes aside, to a sibling file
//! named after the time (`history.jsonl.torn-<time>`), cuts the file back to its last complete
//! line and chains to that; the ledger writes an audit record of the repair, and `verify`
//! lists the files moved aside. A broken line *inside* the chain (an edit) is never repaired.
//!
//! **All or nothing.** An append that fails part-way (a full disk) cuts the file back to its
//! length before the append, so a failed append leaves no trace.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{Context, Error};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Read size of the reverse reader and the forward scan.
pub const BLOCK: usize = 64 * 1024;

/// Lowercase hex SHA-256 of a line's bytes (without its newline).
pub fn hash_line(line: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(line))
}

/// What an append wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: String,
    pub ts: String,
    /// Something after the append went wrong (`status.json` could not be updated): the record
    /// stands, the caller says so.
    pub warning: Option<String>,
    /// The file ended in a torn line (a crash mid-append); its bytes were moved to this sibling
    /// file before the record was written. The caller records the repair in the audit trail.
    pub repaired: Option<Repair>,
}

/// A torn final line moved aside by an append.
#[derive(Debug, Clone)]
pub struct Repair {
    /// The ledger file that ended in the torn line.
    pub file: PathBuf,
    /// Where its bytes are now.
    pub aside: PathBuf,
    pub bytes: u64,
}

/// Appends one record, all or nothing: takes an exclusive `flock` on the file, moves a torn
/// final line aside ([`repair_torn_tail`]), finds the previous line by reading backwards from
/// the end, writes the envelope (`schema`, `id`, `ts`, `prev`) and `body` redacted as one
/// `write`, then fsyncs. When the write or the fsync fails (a full disk), the file is cut back
/// to its length before the append: no partial line is ever left behind. The lock is released
/// when the file is closed.
pub fn append(path: &Path, body: serde_json::Value) -> Result<Appended, Error> {
    let existed = path.exists();
    let mut file = super::file::open(
        path,
        OpenOptions::new().create(true).append(true).read(true),
    )?
    .ok_or_else(|| Error::failed(format!("cannot create `{}`", path.display())))?;
    file.lock()
        .with_context(|| format!("cannot lock `{}`", path.display()))?;
    let repaired = repair_torn_tail(&mut file, path)?;
    let (last, torn) = last_line(&mut file)
        .with_context(|| format!("cannot read the end of `{}`", path.display()))?;
    let prev = match &last {
        Some(line) => hash_line(line),
        None => GENESIS.to_string(),
    };
    let (mut appended, buf) = encode_line(body, prev, torn)?;
    appended.repaired = repaired;
    let before = file
        .metadata()
        .with_context(|| format!("cannot read the length of `{}`", path.display()))?
        .len();
    // One write of the whole line (O_APPEND): concurrent readers never see half of it unless
    // the machine dies mid-write, which leaves a torn line the next append repairs.
    let written = file
        .write_all(&buf)
        .with_context(|| format!("cannot append to `{}`", path.display()))
        .and_then(|()| {
            file.sync_all()
                .with_context(|| format!("cannot fsync `{}`", path.display()))
        });
    if let Err(mut e) = written {
        // All or nothing: cut the partial line off again (shrinking needs no space).
        if let Err(cut) = file.set_len(before).and_then(|()| file.sync_all()) {
            e = e.caused_by(format!(
                "and the partial line could not be cut off again ({cut}): the next append moves \
                 it aside"
            ));
        }
        if let Some(r) = &appended.repaired {
            // The repair happened, but its audit record will not: the error says so instead.
            e = e.caused_by(format!(
                "its torn final line ({} bytes) had been moved to `{}`",
                r.bytes,
                r.aside.display()
            ));
        }
        let hint = hint_for_write(&e);
        return Err(e.with_hint(hint));
    }
    if !existed {
        sync_dir(path.parent().unwrap_or(Path::new(".")));
    }
    Ok(appended)
}

fn hint_for_write(e: &Error) -> String {
    if e.causes
        .iter()
        .any(|c| c.contains("No space left") || c.contains("quota exceeded"))
    {
        "the disk holding the state directory is full: free space there".into()
    } else {
        "check the state directory's disk and permissions".into()
    }
}

/// The name of the file a torn line of `path` is moved to: `<name>.torn-<UTC time>`.
pub fn torn_aside_name(path: &Path) -> PathBuf {
    let time = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let name = path
        .file_name()
        .map_or_else(|| "ledger".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}{TORN_INFIX}{time}"))
}

/// What sits between a ledger file's name and the time in the name of its moved-aside torn
/// lines.
pub const TORN_INFIX: &str = ".torn-";

/// A torn final line (a crash mid-append: bytes after the last newline) is evidence, not a
/// record: its bytes are copied to a sibling file named after the time (fsynced), then the file
/// is cut back to its last complete line. Called under the file's lock; `None` when the file
/// ends in a newline.
fn repair_torn_tail(file: &mut File, path: &Path) -> Result<Option<Repair>, Error> {
    let ctx = || format!("cannot repair the torn final line of `{}`", path.display());
    let size = file.metadata().with_context(ctx)?.len();
    if size == 0 {
        return Ok(None);
    }
    let rev = RevLines::new(file.try_clone().with_context(ctx)?).with_context(ctx)?;
    if !rev.torn_tail {
        return Ok(None);
    }
    let mut rev = rev;
    let (start, torn) = match rev.next_line().with_context(ctx)? {
        Some((offset, line)) => (offset, line.to_vec()),
        None => return Ok(None),
    };
    // A whole record that only lost its newline (it parses and chains to the line before) is
    // kept: the append writes the newline first.
    let prev = match rev.next_line().with_context(ctx)? {
        Some((_, line)) => hash_line(line),
        None => GENESIS.to_string(),
    };
    let chains = serde_json::from_slice::<serde_json::Value>(&torn)
        .is_ok_and(|v| v.get("prev").and_then(|p| p.as_str()) == Some(prev.as_str()));
    if chains {
        return Ok(None);
    }
    let aside = torn_aside_name(path);
    let keep = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&aside)?;
        f.write_all(&torn)?;
        f.sync_all()
    };
    if let Err(e) = keep() {
        let _ = std::fs::remove_file(&aside);
        return Err(Error::failed(ctx()).caused_by(e));
    }
    file.set_len(start).with_context(ctx)?;
    file.sync_all().with_context(ctx)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(Some(Repair {
        file: path.to_path_buf(),
        aside,
        bytes: size - start,
    }))
}

/// Torn lines moved aside from `path` by earlier appends, oldest first.
pub fn earlier_repairs(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}{TORN_INFIX}", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The bytes one append writes: the envelope (`schema`, `id`, `ts`, `prev`) and `body`,
/// redacted, as one line; after a torn final line (`torn`), a newline first so the record starts
/// a line of its own. Shared by the file store and the git store.
pub fn encode_line(
    body: serde_json::Value,
    prev: String,
    torn: bool,
) -> Result<(Appended, Vec<u8>), Error> {
    let id = ulid::Ulid::new().to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut obj = serde_json::Map::new();
    obj.insert("schema".into(), super::records::SCHEMA.into());
    obj.insert("id".into(), id.clone().into());
    obj.insert("ts".into(), ts.clone().into());
    obj.insert("prev".into(), prev.into());
    match body {
        serde_json::Value::Object(body) => {
            for (k, v) in body {
                if !matches!(k.as_str(), "schema" | "id" | "ts" | "prev") {
                    obj.insert(k, v);
                }
            }
        }
        other => {
            return Err(Error::failed(format!(
                "a record must be a JSON object, not {other}"
            )))
        }
    }
    let mut value = serde_json::Value::Object(obj);
    crate::redact::redact_json(&mut value);
    let mut buf = Vec::with_capacity(512);
    if torn {
        // The torn line ends here, so this record starts on a line of its own.
        buf.push(b'\n');
    }
    serde_json::to_writer(&mut buf, &value).context("cannot encode record")?;
    buf.push(b'\n');
    Ok((
        Appended {
            id,
            ts,
            warning: None,
            repaired: None,
        },
        buf,
    ))
}

/// The last line of an in-memory file (without its newline) and whether it is torn (no trailing
/// newline); `None` for an empty file.
pub fn last_line_of(bytes: &[u8]) -> (Option<&[u8]>, bool) {
    if bytes.is_empty() {
        return (None, false);
    }
    let torn = bytes.last() != Some(&b'\n');
    let body = if torn {
        bytes
    } else {
        &bytes[..bytes.len() - 1]
    };
    let start = memchr::memrchr(b'\n', body).map_or(0, |i| i + 1);
    (Some(&body[start..]), torn)
}

/// Fsyncs a directory so a created or renamed entry survives a crash (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The last line's bytes (without newline) and whether it is torn (no trailing newline), reading
/// backwards from the end in blocks.
fn last_line(file: &mut File) -> std::io::Result<(Option<Vec<u8>>, bool)> {
    let mut rev = RevLines::new(file.try_clone()?)?;
    let torn = rev.torn_tail;
    Ok((rev.next_line()?.map(|(_, l)| l.to_vec()), torn))
}

/// Reads lines backwards from the end of a file in [`BLOCK`]-sized reads, newest first, never
/// holding more than one block plus one line.
pub struct RevLines {
    file: File,
    /// Bytes before this offset are not read yet.
    pos: u64,
    /// Bytes `[pos, pos + buf.len())` of the file; lines before `end` are not yet yielded.
    buf: Vec<u8>,
    end: usize,
    done: bool,
    /// The file's final line has no newline (a torn write). It is the first line yielded.
    pub torn_tail: bool,
}

impl RevLines {
    pub fn new(mut file: File) -> std::io::Result<Self> {
        let size = file.seek(SeekFrom::End(0))?;
        let mut torn_tail = false;
        let mut buf = Vec::new();
        let mut pos = size;
        if size > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(size - 1))?;
            file.read_exact(&mut last)?;
            if last[0] == b'\n' {
                // The final newline ends the last line; it does not start an empty one.
                pos = size - 1;
            } else {
                torn_tail = true;
            }
            buf.reserve(BLOCK);
        }
        Ok(RevLines {
            file,
            pos,
            end: 0,
            buf,
            done: size == 0,
            torn_tail,
        })
    }

    /// The next line (newest first) and its byte offset in the file.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        if self.done {
            return Ok(None);
        }
        loop {
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[..self.end]) {
                let start = i + 1;
                let end = self.end;
                self.end = i;
                return Ok(Some((self.pos + start as u64, &self.buf[start..end])));
            }
            if self.pos == 0 {
                self.done = true;
                let end = self.end;
                return Ok(Some((0, &self.buf[..end])));
            }
            let n = (self.pos as usize).min(BLOCK);
            let start = self.pos - n as u64;
            let mut next = vec![0u8; n + self.end];
            self.file.seek(SeekFrom::Start(start))?;
            self.file.read_exact(&mut next[..n])?;
            next[n..].copy_from_slice(&self.buf[..self.end]);
            self.end = next.len();
            self.buf = next;
            self.pos = start;
        }
    }
}

/// Reads lines forwards with a fixed-size buffer, counting line numbers from 1.
pub struct Lines {
    reader: BufReader<File>,
    line: Vec<u8>,
    pub number: u64,
}

impl Lines {
    pub fn new(file: File) -> Self {
        Lines {
            reader: BufReader::with_capacity(BLOCK, file),
            line: Vec::with_capacity(1024),
            number: 0,
        }
    }

    /// The next line's number, the line without its newline, and whether it had one (false: a
    /// torn final line).
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, &[u8], bool)>> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        let complete = self.line.last() == Some(&b'\n');
        if complete {
            self.line.pop();
        }
        Ok(Some((self.number, &self.line, complete)))
    }
}

/// Splits a file into up to `parts` byte ranges, each starting at the start of a line, for
/// reading in parallel.
pub fn split_at_lines(path: &Path, parts: usize) -> std::io::Result<Vec<(u64, u64)>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut bounds = vec![0u64];
    let mut buf = [0u8; 4096];
    for k in 1..parts.max(1) as u64 {
        let mut pos = (size * k / parts as u64).max(*bounds.last().unwrap_or(&0));
        file.seek(SeekFrom::Start(pos))?;
        // The next line starts after the next newline.
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                pos = size;
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                pos += i as u64 + 1;
                break;
            }
            pos += n as u64;
        }
        if pos > *bounds.last().unwrap_or(&0) && pos < size {
            bounds.push(pos);
        }
    }
    bounds.push(size);
    Ok(bounds.windows(2).map(|w| (w[0], w[1])).collect())
}

/// Calls `each(offset, line, complete)` for every line in `[start, end)` of a file, reading
/// forwards with a fixed-size buffer. `start` must be the start of a line.
pub fn for_each_line_in(
    path: &Path,
    start: u64,
    end: u64,
    mut each: impl FnMut(u64, &[u8], bool),
) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(BLOCK, file.take(end - start));
    let mut line = Vec::with_capacity(1024);
    let mut offset = start;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let complete = line.last() == Some(&b'\n');
        let text = if complete { &line[..n - 1] } else { &line[..] };
        each(offset, text, complete);
        offset += n as u64;
    }
}

/// Which file a chain check reads: the body field every record must carry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    History,
    Audit,
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    /// 1-based line number.
    pub line: u64,
    pub message: String,
}

/// The outcome of checking one file's chain.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verified {
    pub lines: u64,
    pub problems: Vec<Problem>,
    /// Torn final lines earlier appends moved aside (the files holding their bytes): evidence
    /// of a crash, repaired, not a problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
}

/// Checks every line of a file: parsable JSON, the envelope and body fields present, and `prev`
/// equal to the hash of the line before. Streams the file; a missing file verifies (empty).
pub fn verify(path: &Path, kind: FileKind) -> Result<Verified, Error> {
    let mut out = Verified {
        repairs: earlier_repairs(path)
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        ..Default::default()
    };
    let Some(file) = super::file::open_read(path)? else {
        return Ok(out);
    };
    let mut lines = Lines::new(file);
    let mut expected = GENESIS.to_string();
    while let Some((number, line, complete)) = lines
        .next_line()
        .with_context(|| format!("cannot read `{}`", path.display()))?
    {
        let problem = if !complete {
            Some(format!(
                "torn final line ({} bytes, no newline): a write was interrupted by a crash; \
                 the next append moves these bytes aside (to `{}.torn-<time>`) and chains to \
                 the line before",
                line.len(),
                path.file_name().unwrap_or_default().to_string_lossy()
            ))
        } else {
            check_line(line, kind, &expected, number)
        };
        if let Some(message) = problem {
            out.problems.push(Problem {
                line: number,
                message,
            });
        }
        expected = hash_line(line);
        out.lines = number;
    }
    Ok(out)
}

fn check_line(line: &[u8], kind: FileKind, expected_prev: &str, number: u64) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        schema: Option<serde_json::Value>,
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        ts: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        prev: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        priority: Option<std::borrow::Cow<'a, str>>,
    }
    let env: Envelope = match serde_json::from_slice(line) {
        Ok(e) => e,
        Err(e) => {
            return Some(if line.is_empty() {
                "empty line".to_string()
            } else {
                format!("unparsable JSON ({e}); a torn write from a crash, or an edit")
            })
        }
    };
    let mut missing = Vec::new();
    if env.schema.is_none() {
        missing.push("schema");
    }
    if env.id.is_none() {
        missing.push("id");
    }
    if env.ts.is_none() {
        missing.push("ts");
    }
    if env.prev.is_none() {
        missing.push("prev");
    }
    match kind {
        FileKind::History if env.kind.is_none() => missing.push("kind"),
        FileKind::Audit if env.priority.is_none() => missing.push("priority"),
        _ => {}
    }
    if !missing.is_empty() {
        return Some(format!("missing fields: {}", missing.join(", ")));
    }
    if let Some(ts) = &env.ts {
        if chrono::DateTime::parse_from_rfc3339(ts).is_err() {
            return Some(format!("`ts` is not an RFC 3339 time: {ts:?}"));
        }
    }
    let prev = env.prev.unwrap_or_default();
    if prev != expected_prev {
        return Some(if number == 1 {
            format!("bad prev hash: the first line must chain to {GENESIS}, found {prev} (lines were removed from the start?)")
        } else {
            format!(
                "bad prev hash: it does not match the SHA-256 of line {} (line {} was changed, \
                 or lines were removed or inserted there)",
                number - 1,
                number - 1
            )
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_a_buffer_and_whether_it_is_torn() {
        assert_eq!(last_line_of(b""), (None, false));
        assert_eq!(last_line_of(b"a\n"), (Some(&b"a"[..]), false));
        assert_eq!(last_line_of(b"a\nbc\n"), (Some(&b"bc"[..]), false));
        assert_eq!(last_line_of(b"a\nbc"), (Some(&b"bc"[..]), true));
        assert_eq!(last_line_of(b"a\n\n"), (Some(&b""[..]), false));
    }

    fn rev_all(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let mut r = RevLines::new(File::open(&p).unwrap()).unwrap();
        let torn = r.torn_tail;
        let mut out = Vec::new();
        while let Some((off, l)) = r.next_line().unwrap() {
            out.push((off, l.to_vec()));
        }
        (out, torn)
    }

    #[test]
    fn reverse_reader_yields_newest_first_with_offsets() {
        let (lines, torn) = rev_all(b"a\nbb\nccc\n");
        assert!(!torn);
        assert_eq!(
            lines,
            vec![
                (5, b"ccc".to_vec()),
                (2, b"bb".to_vec()),
                (0, b"a".to_vec())
            ]
        );
        let (lines, torn) = rev_all(b"a\nbb");
        assert!(torn);
        assert_eq!(lines, vec![(2, b"bb".to_vec()), (0, b"a".to_vec())]);
        assert_eq!(rev_all(b"").0, vec![]);
    }

    #[test]
    fn parallel_parts_cover_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let text: String = (0..1000)
            .map(|i| format!("line {i} {}\n", "x".repeat(i % 50)))
            .collect();
        std::fs::write(&p, format!("{text}torn")).unwrap();
        for parts in [1, 2, 3, 7, 5000] {
            let mut seen = Vec::new();
            for (a, b) in split_at_lines(&p, parts).unwrap() {
                for_each_line_in(&p, a, b, |off, l, complete| {
                    seen.push((off, String::from_utf8(l.to_vec()).unwrap(), complete))
                })
                .unwrap();
            }
            assert_eq!(seen.len(), 1001, "{parts} parts");
            assert_eq!(seen[5].1, "line 5 xxxxx");
            assert_eq!(seen[1000], (text.len() as u64, "torn".to_string(), false));
            assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn reverse_reader_crosses_block_boundaries() {
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20_000u32 {
            // Lines of varied length, some longer than a block.
            let len = if i % 5000 == 0 {
                BLOCK + 17
            } else {
                (i % 97) as usize
            };
            let line: Vec<u8> = std::iter::repeat_n(b'a' + (i % 26) as u8, len).collect();
            expected.push((text.len() as u64, line.clone()));
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        expected.reverse();
        assert_eq!(rev_all(&text).0, expected);
    }
}
