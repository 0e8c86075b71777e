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

/// The largest read of the reverse reader and of the forward scans: big enough that a cold
/// scan runs at the disk's speed (the kernel's read-ahead does not help a reader going
/// backwards, so each read is one large request and the next one is announced ahead).
pub const BIG_BLOCK: usize = 1024 * 1024;

/// Tells the kernel how a file will be read (Linux; elsewhere a no-op). Advice only: errors are
/// ignored.
pub fn advise(file: &File, offset: u64, len: u64, how: Advice) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let advice = match how {
            Advice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
        };
        // SAFETY: a plain system call on an open descriptor; it reads no memory of ours.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset as i64, len as i64, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, how);
}

/// What [`advise`] says.
#[derive(Debug, Clone, Copy)]
pub enum Advice {
    /// Read front to back: the kernel reads ahead further.
    Sequential,
    /// This range is needed soon: start reading it now.
    WillNeed,
}

/// Reads lines backwards from the end of a file, newest first, never holding more than one
/// block plus one line. The first read is [`BLOCK`] (`--last 20` reads only the tail), each
/// further one twice the last up to [`BIG_BLOCK`]; once reads are that big, the block before
/// the one being read is announced to the kernel (`WILLNEED`), so a cold scan keeps the disk
/// busy.
pub struct RevLines {
    file: File,
    /// Bytes before this offset are not read yet.
    pos: u64,
    /// Bytes `[pos, pos + buf.len())` of the file; lines before `end` are not yet yielded.
    buf: Vec<u8>,
    end: usize,
    done: bool,
    /// Size of the next read.
    block: usize,
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
            block: BLOCK,
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
            self.read_block()?;
        }
    }

    /// Reads the block before `pos` in front of the unyielded bytes (the start of a line).
    fn read_block(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let n = (self.pos as usize).min(self.block);
        let start = self.pos - n as u64;
        if self.block == BIG_BLOCK && start > 0 {
            let ahead = start.min(BIG_BLOCK as u64);
            advise(&self.file, start - ahead, ahead, Advice::WillNeed);
        }
        let keep = self.end;
        self.buf.resize(n + keep, 0);
        self.buf.copy_within(..keep, n);
        self.file.read_exact_at(&mut self.buf[..n], start)?;
        self.end = n + keep;
        self.pos = start;
        self.block = (self.block * 2).min(BIG_BLOCK);
        Ok(())
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
/// forwards in blocks of up to [`BIG_BLOCK`]. `start` must be the start of a line.
pub fn for_each_line_in(
    path: &Path,
    start: u64,
    end: u64,
    each: impl FnMut(u64, &[u8], bool),
) -> std::io::Result<()> {
    for_each_line_of(&File::open(path)?, start, end, each)
}

/// [`for_each_line_in`] on an open file (positioned reads: threads may share it). The kernel is
/// told the range is read front to back.
pub fn for_each_line_of(
    file: &File,
    start: u64,
    end: u64,
    mut each: impl FnMut(u64, &[u8], bool),
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if end <= start {
        return Ok(());
    }
    advise(file, start, end - start, Advice::Sequential);
    let mut end = end;
    let mut buf = vec![0u8; BIG_BLOCK.min((end - start) as usize + 1)];
    // `buf[..have]` holds the bytes from `pos` on; the file is read up to `read_to`.
    let (mut have, mut pos, mut read_to) = (0usize, start, start);
    loop {
        if have == buf.len() {
            // A line longer than the buffer.
            buf.resize(buf.len() * 2, 0);
        }
        let want = ((end - read_to) as usize).min(buf.len() - have);
        let n = file.read_at(&mut buf[have..have + want], read_to)?;
        if n == 0 {
            // The file is shorter than it was (cut back by a repair): stop at what is there.
            end = read_to;
        }
        have += n;
        read_to += n as u64;
        let mut i = 0;
        while let Some(j) = memchr::memchr(b'\n', &buf[i..have]) {
            each(pos + i as u64, &buf[i..i + j], true);
            i += j + 1;
        }
        if read_to >= end {
            if i < have {
                each(pos + i as u64, &buf[i..have], false);
            }
            return Ok(());
        }
        buf.copy_within(i..have, 0);
        have -= i;
        pos += i as u64;
    }
}

/// The chunk of [`par_rev_chunks`]: big enough for the disk, small enough that the few chunks
/// and their results in flight stay a few MB.
pub const CHUNK: usize = 512 * 1024;

/// Reads a file in chunks of [`CHUNK`], newest chunk first, on up to `threads` threads, for
/// scans whose every line is wanted but whose order matters (newest first).
///
/// `work(offset, bytes)` gets the whole lines that start in one chunk (`bytes` starts at file
/// offset `offset`; every line ends in a newline except a torn final one) and returns what
/// `consume` needs of them; `consume` runs on the calling thread and gets the results in order,
/// newest chunk first; it returns `false` to stop (workers stop taking chunks). At most
/// `threads + 1` chunks are read ahead of `consume`, so memory stays bounded. The chunk a
/// worker takes next round is announced to the kernel (`WILLNEED`), so a cold scan keeps the
/// disk busy.
pub fn par_rev_chunks<T: Send>(
    file: &File,
    threads: usize,
    work: impl Fn(u64, &[u8]) -> T + Sync,
    mut consume: impl FnMut(T) -> bool,
) -> std::io::Result<()> {
    use std::sync::{mpsc, Condvar, Mutex};
    let size = file.metadata()?.len();
    let chunks = size.div_ceil(CHUNK as u64) as usize;
    if chunks == 0 {
        return Ok(());
    }
    let threads = threads.clamp(1, chunks);
    let window = threads + 1;
    // (next chunk to take, chunks consumed, stop): chunk `k` is the k-th from the end.
    let state = Mutex::new((0usize, 0usize, false));
    let wake = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, std::io::Result<T>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (state, wake, work) = (&state, &wake, &work);
            scope.spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let k = {
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        while !s.2 && s.0 < chunks && s.0 >= s.1 + window {
                            s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
                        }
                        if s.2 || s.0 >= chunks {
                            return;
                        }
                        s.0 += 1;
                        s.0 - 1
                    };
                    let index = (chunks - 1 - k) as u64;
                    if index >= threads as u64 {
                        // The chunk a worker takes next round: have the kernel read it now.
                        let ahead = (index - threads as u64) * CHUNK as u64;
                        advise(file, ahead, CHUNK as u64, Advice::WillNeed);
                    }
                    let start = index * CHUNK as u64;
                    let end = (start + CHUNK as u64).min(size);
                    let result = read_chunk(file, start, end, size, &mut buf)
                        .map(|skip| work(start.saturating_sub(1) + skip as u64, &buf[skip..]));
                    if tx.send((k, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0usize;
        let stop = |state: &Mutex<(usize, usize, bool)>| {
            state.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
            wake.notify_all();
        };
        while next < chunks {
            let Ok((k, result)) = rx.recv() else {
                break;
            };
            pending.insert(k, result);
            while let Some(result) = pending.remove(&next) {
                let more = match result {
                    Ok(t) => consume(t),
                    Err(e) => {
                        stop(&state);
                        return Err(e);
                    }
                };
                next += 1;
                if !more {
                    stop(&state);
                    return Ok(());
                }
                state.lock().unwrap_or_else(|e| e.into_inner()).1 = next;
                wake.notify_all();
            }
        }
        Ok(())
    })
}

/// Reads the lines starting in `[start, end)` of a file of `size` bytes into `buf`, from the
/// byte before `start` (to see whether a line starts at `start`) to the newline ending the last
/// of them. Returns where in `buf` the first of them starts.
fn read_chunk(
    file: &File,
    start: u64,
    end: u64,
    size: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let from = start.saturating_sub(1);
    buf.resize((end - from) as usize, 0);
    file.read_exact_at(buf, from)?;
    let mut to = end;
    // The last line starting before `end` ends at the first newline from `end - 1` on.
    while to < size && buf.last() != Some(&b'\n') {
        let old = buf.len();
        let n = ((size - to) as usize).min(BLOCK);
        buf.resize(old + n, 0);
        file.read_exact_at(&mut buf[old..], to)?;
        to += n as u64;
        if let Some(i) = memchr::memchr(b'\n', &buf[old..]) {
            buf.truncate(old + i + 1);
        }
    }
    Ok(if start == 0 {
        0
    } else {
        memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1)
    })
}

/// Calls `each(offset, line, complete)` for every line of `bytes` (which start at file offset
/// `offset`), last line first; a final line without a newline is not `complete`.
pub fn for_each_line_rev(offset: u64, bytes: &[u8], mut each: impl FnMut(u64, &[u8], bool)) {
    let (mut end, complete) = match bytes.last() {
        None => return,
        Some(b'\n') => (bytes.len() - 1, true),
        Some(_) => (bytes.len(), false),
    };
    let mut complete = complete;
    loop {
        let start = memchr::memrchr(b'\n', &bytes[..end]).map_or(0, |i| i + 1);
        each(offset + start as u64, &bytes[start..end], complete);
        complete = true;
        if start == 0 {
            return;
        }
        end = start - 1;
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

/// Files smaller than this are checked on one thread.
const PARALLEL_VERIFY_BYTES: u64 = 4 * BIG_BLOCK as u64;

/// Checks every line of a file: parsable JSON, the envelope and body fields present, and `prev`
/// equal to the hash of the line before. Streams the file; a missing file verifies (empty).
///
/// A large file is split at line starts into one part per core, each hashed and checked on its
/// own thread; a part's first `prev` is checked at the join against the hash of the last line
/// of the part before, and line numbers are counted across the parts, so the problems and their
/// messages are those of one pass from the top.
pub fn verify(path: &Path, kind: FileKind) -> Result<Verified, Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() < PARALLEL_VERIFY_BYTES);
    verify_with(path, kind, if small { 1 } else { threads })
}

/// [`verify`] in (at most) `parts` parts.
pub fn verify_with(path: &Path, kind: FileKind, parts: usize) -> Result<Verified, Error> {
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
    let ctx = || format!("cannot read `{}`", path.display());
    let size = file.metadata().with_context(ctx)?.len();
    let parts = if parts <= 1 {
        vec![(0, size)]
    } else {
        split_at_lines(path, parts).with_context(ctx)?
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let checked: Vec<std::io::Result<PartCheck>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| {
                let (file, name) = (&file, &name);
                scope.spawn(move || check_part(file, start, end, i == 0, kind, name))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a verify thread panicked"))
            .collect()
    });
    // The hash the next line must carry as `prev`.
    let mut before = [0u8; 64];
    before.copy_from_slice(GENESIS.as_bytes());
    for part in checked {
        let part = part.with_context(ctx)?;
        let base = out.lines;
        if let Some(found) = &part.first_prev {
            if found.as_bytes() != before {
                out.problems.push(Problem {
                    line: base + 1,
                    message: bad_prev(base + 1, found),
                });
            }
        }
        for (n, p) in part.problems {
            let line = base + n;
            out.problems.push(Problem {
                line,
                message: match p {
                    LineProblem::Text(m) => m,
                    LineProblem::BadPrev(found) => bad_prev(line, &found),
                },
            });
        }
        out.lines += part.lines;
        if part.lines > 0 {
            before = part.last_hash;
        }
    }
    Ok(out)
}

/// What one part of a file's chain check found; line numbers count from 1 at the part's start.
struct PartCheck {
    lines: u64,
    problems: Vec<(u64, LineProblem)>,
    /// The `prev` of a later part's first line, checked at the join.
    first_prev: Option<String>,
    /// Lowercase hex SHA-256 of the part's last line.
    last_hash: [u8; 64],
}

enum LineProblem {
    Text(String),
    /// `prev` is not the hash of the line before; the message names line numbers.
    BadPrev(String),
}

fn check_part(
    file: &File,
    start: u64,
    end: u64,
    first: bool,
    kind: FileKind,
    name: &str,
) -> std::io::Result<PartCheck> {
    let mut part = PartCheck {
        lines: 0,
        problems: Vec::new(),
        first_prev: None,
        last_hash: [0; 64],
    };
    part.last_hash.copy_from_slice(GENESIS.as_bytes());
    for_each_line_of(file, start, end, |_, line, complete| {
        part.lines += 1;
        let problem = if !complete {
            Some(LineProblem::Text(format!(
                "torn final line ({} bytes, no newline): a write was interrupted by a crash; \
                 the next append moves these bytes aside (to `{name}.torn-<time>`) and chains \
                 to the line before",
                line.len(),
            )))
        } else {
            match envelope(line, kind) {
                Err(message) => Some(LineProblem::Text(message)),
                Ok(prev) if part.lines == 1 && !first => {
                    part.first_prev = Some(prev.into_owned());
                    None
                }
                Ok(prev) if prev.as_bytes() != part.last_hash => {
                    Some(LineProblem::BadPrev(prev.into_owned()))
                }
                Ok(_) => None,
            }
        };
        if let Some(p) = problem {
            part.problems.push((part.lines, p));
        }
        let digest = sha2::Sha256::digest(line);
        hex::encode_to_slice(digest, &mut part.last_hash).expect("64 hex digits");
    })?;
    Ok(part)
}

fn bad_prev(number: u64, found: &str) -> String {
    if number == 1 {
        format!("bad prev hash: the first line must chain to {GENESIS}, found {found} (lines were removed from the start?)")
    } else {
        format!(
            "bad prev hash: it does not match the SHA-256 of line {} (line {} was changed, or \
             lines were removed or inserted there)",
            number - 1,
            number - 1
        )
    }
}

/// A line's `prev` when the line is sound apart from its chain: parsable JSON holding the
/// envelope and body fields, `ts` an RFC 3339 time. Otherwise what is wrong with it.
///
/// Most lines are checked by [`envelope_fast`], which validates the JSON in one pass without
/// building anything; a line it is not sure of (escapes in an envelope field, a duplicated or
/// missing field, anything unusual) is parsed by serde ([`envelope_slow`]), whose verdict and
/// message stand. The fast path accepts only lines the slow one accepts.
fn envelope(line: &[u8], kind: FileKind) -> Result<std::borrow::Cow<'_, str>, String> {
    match envelope_fast(line, kind) {
        Some(prev) => Ok(std::borrow::Cow::Borrowed(prev)),
        None => envelope_slow(line, kind),
    }
}

fn envelope_slow(line: &[u8], kind: FileKind) -> Result<std::borrow::Cow<'_, str>, String> {
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
            return Err(if line.is_empty() {
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
        return Err(format!("missing fields: {}", missing.join(", ")));
    }
    if let Some(ts) = &env.ts {
        if chrono::DateTime::parse_from_rfc3339(ts).is_err() {
            return Err(format!("`ts` is not an RFC 3339 time: {ts:?}"));
        }
    }
    Ok(env.prev.unwrap_or_default())
}

/// The fast path of [`envelope`]: `Some(prev)` only when the line is certainly sound.
fn envelope_fast(line: &[u8], kind: FileKind) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let mut v = Validator {
        b: line,
        i: 0,
        fields: [None; 6],
    };
    v.ws();
    v.object(0)?;
    v.ws();
    if v.i != line.len() {
        return None;
    }
    let [schema, id, ts, prev, record_kind, priority] = v.fields;
    let body = match kind {
        FileKind::History => record_kind,
        FileKind::Audit => priority,
    };
    schema?;
    id?;
    body?;
    let ts = &text[ts?.0..ts?.1];
    chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    let prev = prev?;
    Some(&text[prev.0..prev.1])
}

/// The first byte from `i` on that ends or interrupts a JSON string's plain run: a quote, a
/// backslash or a control character (`b.len()` when there is none). Eight bytes at a time.
fn string_stop(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero (after the xor) or below 0x20; the lowest flag is
        // exact (borrows only flag bytes above a hit).
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|c| !matches!(c, b'"' | b'\\' | 0..=0x1f))
    {
        i += 1;
    }
    i
}

/// The envelope fields [`Validator`] notes at the top level, in this order.
const ENVELOPE: [&[u8]; 6] = [b"schema", b"id", b"ts", b"prev", b"kind", b"priority"];

/// A JSON syntax check at least as strict as serde_json's, noting where the top-level envelope
/// fields' values are. It gives up (`None`) on anything it is not sure serde_json accepts the
/// same way: `\u` escapes, control characters, nesting deeper than 100, non-integer `schema`,
/// escaped keys or values of envelope fields, a duplicated envelope field.
struct Validator<'a> {
    b: &'a [u8],
    i: usize,
    /// Byte range of each [`ENVELOPE`] field's string value (`schema`: its number).
    fields: [Option<(usize, usize)>; 6],
}

impl Validator<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string at `i`; the range of its contents and whether it holds escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let j = string_stop(self.b, self.i);
            match *self.b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some((start, j, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(j + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i = j + 2,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > 100 {
            return None;
        }
        match *self.b.get(self.i)? {
            b'{' => self.object(depth + 1),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match *self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// An object at `i`; at depth 0 (the record) its envelope fields are noted.
    fn object(&mut self, depth: usize) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let (ks, ke, key_escaped) = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            self.value(depth + 1)?;
            if depth == 0 {
                if key_escaped {
                    return None;
                }
                let key = &self.b[ks..ke];
                if let Some(f) = ENVELOPE.iter().position(|k| *k == key) {
                    if self.fields[f].is_some() {
                        return None;
                    }
                    let value = &self.b[start..self.i];
                    let range = if f == 0 {
                        // `schema`: a small integer (serde reads it into a `Value`).
                        let small = !value.is_empty()
                            && value.len() <= 18
                            && value.iter().all(u8::is_ascii_digit);
                        small.then_some((start, self.i))?
                    } else {
                        // A string without escapes (serde borrows it).
                        let plain = value.len() >= 2
                            && value[0] == b'"'
                            && !value[1..value.len() - 1].contains(&b'\\');
                        plain.then_some((start + 1, self.i - 1))?
                    };
                    self.fields[f] = Some(range);
                }
            }
            self.ws();
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain check as it was before the fast path and the parts: serde for every line, one
    /// pass from the top.
    fn verify_slow(bytes: &[u8], kind: FileKind) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut expected = GENESIS.to_string();
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for (i, line) in body.split(|c| *c == b'\n').enumerate() {
            let number = i as u64 + 1;
            let complete = number as usize <= bytes.iter().filter(|c| **c == b'\n').count();
            let message = if !complete {
                Some(format!(
                    "torn final line ({} bytes, no newline): a write was interrupted by a crash; \
                     the next append moves these bytes aside (to `f.torn-<time>`) and chains \
                     to the line before",
                    line.len()
                ))
            } else {
                match envelope_slow(line, kind) {
                    Err(m) => Some(m),
                    Ok(prev) if prev != expected => Some(bad_prev(number, &prev)),
                    Ok(_) => None,
                }
            };
            if let Some(message) = message {
                out.push(Problem {
                    line: number,
                    message,
                });
            }
            expected = hash_line(line);
        }
        out
    }

    /// A chain of `n` history records as the ledger writes them.
    fn chain(n: usize) -> Vec<Vec<u8>> {
        let mut prev = GENESIS.to_string();
        (0..n)
            .map(|i| {
                let body = serde_json::json!({
                    "kind": "gate", "deploy_id": format!("d{}", i / 5), "region": "lhr",
                    "result": "pass", "detail": format!("HTTP 200 in {i} ms, \"quoted\" \\ é"),
                    "nested": {"a": [1, -2.5e3, true, null, {"b": []}]},
                });
                let (_, mut line) = encode_line(body, prev.clone(), false).unwrap();
                line.pop();
                prev = hash_line(&line);
                line
            })
            .collect()
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| l.iter().chain(b"\n"))
            .copied()
            .collect()
    }

    fn check_all_ways(bytes: &[u8], kind: FileKind, what: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let expected = verify_slow(bytes, kind);
        for parts in [1, 2, 3, 7] {
            let v = verify_with(&p, kind, parts).unwrap();
            assert_eq!(v.problems, expected, "{what}, {parts} parts");
            let lines = bytes
                .split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            assert_eq!(v.lines, lines as u64 + u64::from(bytes.ends_with(b"\n\n")));
        }
        expected
    }

    #[test]
    fn the_fast_path_and_the_parts_give_the_verdicts_of_the_slow_check() {
        let good = chain(40);
        assert!(check_all_ways(&join(&good), FileKind::History, "intact").is_empty());
        let first = |problems: Vec<Problem>| problems.first().map(|p| (p.line, p.message.clone()));

        let mut changed = good.clone();
        let at = memchr::memmem::find(&changed[10], b"HTTP").unwrap();
        changed[10][at] ^= 1;
        let found = first(check_all_ways(
            &join(&changed),
            FileKind::History,
            "changed byte",
        ));
        assert!(found.is_some_and(|(l, m)| l == 12 && m.contains("line 11 was changed")));

        let mut removed = good.clone();
        removed.remove(20);
        let p = check_all_ways(&join(&removed), FileKind::History, "removed line");
        assert_eq!(p.len(), 1);

        let mut reordered = good.clone();
        reordered.swap(5, 6);
        let p = check_all_ways(&join(&reordered), FileKind::History, "reordered lines");
        assert_eq!(p.len(), 3);

        let mut removed_first = good.clone();
        removed_first.remove(0);
        let p = check_all_ways(&join(&removed_first), FileKind::History, "removed first");
        assert!(p[0].message.contains("the first line must chain to"));

        let mut bad_json = good.clone();
        let cut = bad_json[30].len() - 3;
        bad_json[30].truncate(cut);
        let p = check_all_ways(&join(&bad_json), FileKind::History, "bad JSON");
        assert!(p[0].message.starts_with("unparsable JSON"), "{p:?}");

        let mut missing = good.clone();
        let text = String::from_utf8(missing[3].clone()).unwrap();
        missing[3] = text.replace("\"kind\":\"gate\",", "").into_bytes();
        let p = check_all_ways(&join(&missing), FileKind::History, "missing field");
        assert_eq!(p[0].message, "missing fields: kind");
        // The audit trail wants `priority` instead.
        let p = check_all_ways(&join(&good), FileKind::Audit, "history as audit");
        assert_eq!(p.len(), 40);

        let mut bad_ts = good.clone();
        let text = String::from_utf8(bad_ts[7].clone()).unwrap();
        let ts = &text[text.find("\"ts\":\"").unwrap() + 6..][..24];
        bad_ts[7] = text.replace(ts, "2026-13-01T00:00:00.000Z").into_bytes();
        let p = check_all_ways(&join(&bad_ts), FileKind::History, "bad ts");
        assert!(
            p[0].message.starts_with("`ts` is not an RFC 3339 time"),
            "{p:?}"
        );

        let mut blank = join(&good);
        blank.extend_from_slice(b"\n");
        let p = check_all_ways(&blank, FileKind::History, "empty line");
        assert_eq!(p[0].message, "empty line");

        let mut torn = join(&good);
        torn.extend_from_slice(b"{\"schema\":1,\"id");
        let p = check_all_ways(&torn, FileKind::History, "torn");
        assert!(p[0].message.starts_with("torn final line"));
    }

    #[test]
    fn string_stop_finds_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, 0x0a] {
                for at in 0..=len {
                    let mut b: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8 + 1).collect();
                    // No stop byte among the filler ('!'..'z' has '"' and '\\': skip those).
                    for c in &mut b {
                        if *c == b'"' || *c == b'\\' {
                            *c = b'a';
                        }
                    }
                    if at < len {
                        b[at] = stop;
                        // A later hit and high bytes change nothing.
                        if at + 3 < len {
                            b[at + 3] = b'"';
                            b[at + 1] = 0xff;
                        }
                    }
                    for from in 0..=at.min(len) {
                        assert_eq!(string_stop(&b, from), at, "{len} {stop} {at} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_fast_path_accepts_only_lines_the_slow_check_accepts() {
        let line = chain(1).remove(0);
        assert!(envelope_fast(&line, FileKind::History).is_some());
        let odd: &[&[u8]] = &[
            b"\"",
            b"}",
            b"{",
            b"]",
            b"[",
            b",",
            b":",
            b"\\",
            b" ",
            b"x",
            b"0",
            b"-",
            b".",
            b"e",
            b"\x01",
            b"\xff",
            b"\\u0041",
            b"\\ud800",
            b"null",
            b"1e400",
            b"\"kind\":1,",
            b"\"ts\":\"x\",",
            b"\"prev\":\"a\",",
        ];
        let mut checked = 0;
        for at in 0..=line.len() {
            for ins in odd {
                for replace in [0, 1] {
                    let mut l = line[..at].to_vec();
                    l.extend_from_slice(ins);
                    l.extend_from_slice(&line[(at + replace).min(line.len())..]);
                    if let Some(prev) = envelope_fast(&l, FileKind::History) {
                        let slow = envelope_slow(&l, FileKind::History);
                        assert_eq!(slow.as_deref(), Ok(prev), "{}", String::from_utf8_lossy(&l));
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
    }

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
    fn the_chunk_pool_yields_every_line_once_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40_000usize {
            // Lines of varied length, two longer than a chunk, one empty.
            let len = match i {
                7 | 30_000 => CHUNK * 2 + 5,
                20_000 => 0,
                _ => i % 131,
            };
            let line: Vec<u8> = std::iter::repeat_n(b'a' + (i % 26) as u8, len).collect();
            expected.push((text.len() as u64, line.clone(), true));
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        expected.push((text.len() as u64, b"torn".to_vec(), false));
        text.extend_from_slice(b"torn");
        expected.reverse();
        std::fs::write(&p, &text).unwrap();
        let file = File::open(&p).unwrap();
        for threads in [1, 2, 3] {
            let mut seen = Vec::new();
            par_rev_chunks(
                &file,
                threads,
                |offset, bytes| {
                    let mut lines = Vec::new();
                    for_each_line_rev(offset, bytes, |o, l, c| lines.push((o, l.to_vec(), c)));
                    lines
                },
                |lines| {
                    seen.extend(lines);
                    true
                },
            )
            .unwrap();
            assert_eq!(seen.len(), expected.len(), "{threads} threads");
            assert!(seen == expected, "{threads} threads");
            // Stopping early stops.
            let mut chunks = 0;
            par_rev_chunks(
                &file,
                threads,
                |_, _| (),
                |()| {
                    chunks += 1;
                    chunks < 2
                },
            )
            .unwrap();
            assert_eq!(chunks, 2);
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
