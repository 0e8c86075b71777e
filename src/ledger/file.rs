//! Opening the state directory's files. The directory holds regular files only: every file is
//! opened with `O_NOFOLLOW` and checked to be a regular file, so a symbolic link planted in it
//! (a checkout an attacker can commit to holds the default `.shipgate`) is refused, never
//! written through. A problem found here is exit 2: it is found before anything changes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::Error;
use crate::exit_code;

/// Opens `path` with `opts`, never through a symbolic link, and only if it is a regular file.
/// `Ok(None)` when it does not exist (and `opts` does not create it).
pub fn open(path: &Path, opts: &mut OpenOptions) -> Result<Option<File>, Error> {
    // O_NONBLOCK: a FIFO planted under a ledger name must not hang the open (it is refused
    // below); for a regular file the flag does nothing.
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular(path, "a symbolic link"))
        }
        Err(e) => return Err(cannot_open(path, &e)),
    };
    let meta = file.metadata().map_err(|e| cannot_open(path, &e))?;
    if !meta.is_file() {
        return Err(not_regular(path, kind_of(&meta.file_type())));
    }
    Ok(Some(file))
}

/// Opens an existing file for reading; `Ok(None)` when it does not exist.
pub fn open_read(path: &Path) -> Result<Option<File>, Error> {
    open(path, OpenOptions::new().read(true))
}

/// Reads a whole (small) file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    use std::io::Read;
    let Some(mut f) = open_read(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| Error::failed(format!("cannot read `{}`", path.display())).caused_by(e))?;
    Ok(Some(bytes))
}

/// Refuses `path` unless it is missing or a regular file (without following a link).
pub fn ensure_regular_or_missing(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(not_regular(path, kind_of(&m.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(cannot_open(path, &e)),
    }
}

/// Whether `dir` takes a new file now: creates, writes and fsyncs a small probe file, then
/// removes it. Catches a read-only mount, a full disk and missing permissions before anything
/// changes.
pub fn probe_dir(dir: &Path) -> Result<(), Error> {
    let probe = dir.join(format!(".shipgate-probe-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&probe)?;
        // One page: on a full disk the first byte of a new page already fails.
        f.write_all(&[b'\n'; 4096])?;
        f.sync_all()
    };
    let result = write();
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| {
        Error::usage(format!(
            "cannot write to the state directory `{}`",
            dir.display()
        ))
        .caused_by(&e)
        .with_hint(hint_for(&e))
    })
}

/// Exit 2 naming a file that is not a regular file.
pub fn not_regular(path: &Path, what: &str) -> Error {
    Error::usage(format!(
        "`{}` is {what}: the state directory holds regular files only",
        path.display()
    ))
    .with_hint(
        "shipgate never writes through a link or into anything but a regular file; remove it \
         (a checkout may have planted it) or point --state-dir (SHIPGATE_STATE_DIR) elsewhere",
    )
}

fn cannot_open(path: &Path, e: &std::io::Error) -> Error {
    Error::new(
        match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOSPC | libc::ENOTDIR) => {
                exit_code::USAGE
            }
            _ => exit_code::FAILED,
        },
        format!("cannot open `{}`", path.display()),
    )
    .caused_by(e)
    .with_hint(hint_for(e))
}

/// What to do about an I/O error in the state directory.
pub fn hint_for(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "the disk is full: free space there, or point \
             --state-dir (SHIPGATE_STATE_DIR) at another disk"
            .into(),
        Some(libc::EROFS) => "the file system is mounted read-only: point --state-dir \
             (SHIPGATE_STATE_DIR) or [state].dir at a writable directory"
            .into(),
        Some(libc::EACCES | libc::EPERM) => "check its permissions and owner (and `lsattr` for \
             an immutable flag), or point --state-dir (SHIPGATE_STATE_DIR) elsewhere"
            .into(),
        Some(libc::ENOTDIR) => "a part of the path is a file: point --state-dir \
             (SHIPGATE_STATE_DIR) or [state].dir at a directory"
            .into(),
        _ => "check --state-dir (SHIPGATE_STATE_DIR) or [state].dir and its permissions".into(),
    }
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_a_directory_and_a_fifo_are_refused_with_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open(&link, OpenOptions::new().append(true)).unwrap_err();
        assert_eq!(e.code, exit_code::USAGE);
        assert!(e.message.contains("symbolic link"), "{}", e.message);
        assert!(ensure_regular_or_missing(&link).is_err());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(open_read(&sub).unwrap_err().message.contains("directory"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_read(&fifo).unwrap_err().message.contains("FIFO"));
        assert!(open_read(&dir.path().join("missing")).unwrap().is_none());
        assert!(open_read(&victim).unwrap().is_some());
        probe_dir(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            4,
            "the probe is gone"
        );
    }
}
