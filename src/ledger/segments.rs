//! The git store's layout of a ledger file on its branch: segments.
//!
//! `history.jsonl` is stored as `history/000/000000.jsonl`, `history/000/000001.jsonl`, …
//! (`audit.jsonl` likewise under `audit/`): segment `n` lives in fan-out directory `n / 1000`,
//! so no tree holds more than 1000 entries. A new segment is started when the current one would
//! grow past [`SEGMENT_BYTES`], so an append rewrites one bounded blob and the trees on its path,
//! never the whole history. The hash chain runs on across segments: the first line of segment
//! `n + 1` has `prev` = the hash of the last line of segment `n`. Concatenated in order, the
//! segments are exactly the file a file store would hold.
//!
//! A branch written by an older shipgate holds the whole file at the root (`history.jsonl`): it
//! is read as the first, frozen segment, and new appends start numbered segments after it.

use git2::{ObjectType, Oid, Repository, Tree};

use super::jsonl::{self, Appended};
use crate::error::Error;

/// The size past which a new segment is started.
pub const SEGMENT_BYTES: usize = 256 * 1024;

/// For tests only: the segment size in bytes (so a test reaches many segments quickly).
pub const SEGMENT_ENV: &str = "SHIPGATE_GIT_SEGMENT_BYTES";

/// Segments per fan-out directory.
pub const PER_DIR: u64 = 1000;

/// The segment size in force ([`SEGMENT_BYTES`], or [`SEGMENT_ENV`] in tests).
pub fn segment_bytes() -> usize {
    std::env::var(SEGMENT_ENV)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(SEGMENT_BYTES)
}

/// One segment of a ledger file on the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its path in the branch's tree (`history/000/000123.jsonl`, or `history.jsonl` for the
    /// old layout's root file).
    pub path: String,
    /// `None` for the old layout's root file, which comes first.
    pub number: Option<u64>,
    pub blob: Oid,
}

/// `history.jsonl` → `history`.
fn dir_of(file: &str) -> &str {
    file.strip_suffix(".jsonl").unwrap_or(file)
}

/// The path of segment `n` of `file`.
pub fn path_of(file: &str, n: u64) -> String {
    format!("{}/{:03}/{n:06}.jsonl", dir_of(file), n / PER_DIR)
}

/// The segments of `file` in `tree`, in order: the old layout's root file first, then the
/// numbered segments by number. Entries that are not segments are ignored.
pub fn list(repo: &Repository, tree: Option<&Tree>, file: &str) -> Result<Vec<Segment>, Error> {
    segments_of(repo, tree, file, false)
}

/// The last segment of `file` in `tree`: only the highest fan-out directory is read.
pub fn last(repo: &Repository, tree: Option<&Tree>, file: &str) -> Result<Option<Segment>, Error> {
    Ok(segments_of(repo, tree, file, true)?.pop())
}

/// [`list`], or with `last_only` the root file and the highest non-empty fan-out directory's
/// segments (enough to know the last one).
fn segments_of(
    repo: &Repository,
    tree: Option<&Tree>,
    file: &str,
    last_only: bool,
) -> Result<Vec<Segment>, Error> {
    let Some(tree) = tree else {
        return Ok(Vec::new());
    };
    let fail = |e: git2::Error| {
        Error::failed(format!("cannot read `{file}` from the ledger branch")).caused_by(e.message())
    };
    let mut out = Vec::new();
    if let Some(root) = tree
        .get_name(file)
        .filter(|e| e.kind() == Some(ObjectType::Blob))
    {
        out.push(Segment {
            path: file.to_string(),
            number: None,
            blob: root.id(),
        });
    }
    let dir = dir_of(file);
    let Some(top) = tree
        .get_name(dir)
        .filter(|e| e.kind() == Some(ObjectType::Tree))
    else {
        return Ok(out);
    };
    let top = repo.find_tree(top.id()).map_err(fail)?;
    let mut fans: Vec<(u64, String, Oid)> = top
        .iter()
        .filter(|e| e.kind() == Some(ObjectType::Tree))
        .filter_map(|e| {
            let name = e.name().filter(|n| is_digits(n))?;
            Some((name.parse().ok()?, name.to_string(), e.id()))
        })
        .collect();
    fans.sort();
    let mut numbered = Vec::new();
    for (_, fan_name, fan) in fans.iter().rev() {
        let fan_tree = repo.find_tree(*fan).map_err(fail)?;
        let before = numbered.len();
        for seg in fan_tree.iter() {
            let Some(n) = seg
                .name()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .filter(|n| is_digits(n))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if seg.kind() != Some(ObjectType::Blob) {
                continue;
            }
            numbered.push(Segment {
                path: format!("{dir}/{fan_name}/{}", seg.name().unwrap_or_default()),
                number: Some(n),
                blob: seg.id(),
            });
        }
        if last_only && numbered.len() > before {
            break;
        }
    }
    numbered.sort_by_key(|s| s.number);
    out.extend(numbered);
    Ok(out)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A blob's bytes.
pub fn read_blob(repo: &Repository, oid: Oid, path: &str) -> Result<Vec<u8>, Error> {
    let blob = repo.find_blob(oid).map_err(|e| {
        Error::failed(format!("cannot read `{path}` from the ledger branch")).caused_by(e.message())
    })?;
    Ok(blob.content().to_vec())
}

/// One append to `file` on `tree`: the path of the segment it writes and that segment's new
/// bytes. Reads only the last segment (and, once, the old layout's root file when it is the
/// last): the line goes at its end, or starts the next segment when it would grow past
/// [`segment_bytes`] (or after the frozen root file), chained to the last line before it.
pub fn append(
    repo: &Repository,
    tree: Option<&Tree>,
    file: &str,
    body: serde_json::Value,
) -> Result<(String, Vec<u8>, Appended), Error> {
    let Some(last) = last(repo, tree, file)? else {
        let (a, line) = jsonl::encode_line(body, jsonl::GENESIS.to_string(), false)?;
        return Ok((path_of(file, 0), line, a));
    };
    let mut bytes = read_blob(repo, last.blob, &last.path)?;
    let (last_line, torn) = jsonl::last_line_of(&bytes);
    let prev = last_line.map_or_else(|| jsonl::GENESIS.to_string(), jsonl::hash_line);
    let (a, line) = jsonl::encode_line(body, prev, torn)?;
    // A torn tail is finished where it is (the newline goes first), never split across
    // segments; an empty segment is filled.
    let stay = torn
        || bytes.is_empty()
        || (last.number.is_some() && bytes.len() + line.len() <= segment_bytes());
    if stay {
        bytes.extend_from_slice(&line);
        return Ok((last.path, bytes, a));
    }
    let next = last.number.map_or(0, |n| n + 1);
    Ok((path_of(file, next), line, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(repo: &Repository, files: &[(&str, &[u8])]) -> Oid {
        let mut tree = None;
        for (path, bytes) in files {
            let blob = repo.blob(bytes).unwrap();
            let parts: Vec<&str> = path.split('/').collect();
            let at = tree.map(|t| repo.find_tree(t).unwrap());
            tree = Some(put(repo, at.as_ref(), &parts, blob));
        }
        tree.unwrap()
    }

    fn put(repo: &Repository, tree: Option<&Tree>, path: &[&str], blob: Oid) -> Oid {
        let mut b = repo.treebuilder(tree).unwrap();
        if let [name] = path {
            b.insert(name, blob, 0o100644).unwrap();
        } else {
            let sub = tree
                .and_then(|t| t.get_name(path[0]))
                .map(|e| repo.find_tree(e.id()).unwrap());
            b.insert(path[0], put(repo, sub.as_ref(), &path[1..], blob), 0o040000)
                .unwrap();
        }
        b.write().unwrap()
    }

    fn line(n: usize) -> serde_json::Value {
        serde_json::json!({"kind": "event", "n": n})
    }

    #[test]
    fn an_append_fills_the_last_segment_then_starts_the_next_chained_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let max = segment_bytes();
        // Nearly full: the next line starts segment 8 (numbers, not tree order, decide).
        let full = format!("{}\n", "x".repeat(max - 10));
        let t = tree_with(
            &repo,
            &[
                ("history/000/000007.jsonl", full.as_bytes()),
                ("history/000/000002.jsonl", b"old\n"),
                ("history/000/notes.txt", b"ignored\n"),
            ],
        );
        let tree = repo.find_tree(t).unwrap();
        let segs = list(&repo, Some(&tree), "history.jsonl").unwrap();
        let paths: Vec<_> = segs.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            ["history/000/000002.jsonl", "history/000/000007.jsonl"]
        );
        let (path, bytes, _) = append(&repo, Some(&tree), "history.jsonl", line(1)).unwrap();
        assert_eq!(path, "history/000/000008.jsonl");
        let first: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            first["prev"],
            jsonl::hash_line("x".repeat(max - 10).as_bytes())
        );

        // Room left: the line goes at the end of the last segment.
        let t = tree_with(&repo, &[("history/000/000000.jsonl", b"a\n")]);
        let tree = repo.find_tree(t).unwrap();
        let (path, bytes, _) = append(&repo, Some(&tree), "history.jsonl", line(2)).unwrap();
        assert_eq!(path, "history/000/000000.jsonl");
        assert!(
            bytes.starts_with(b"a\n{"),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn the_old_layouts_root_file_is_frozen_and_a_torn_tail_finished_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let t = tree_with(&repo, &[("history.jsonl", b"legacy\n")]);
        let tree = repo.find_tree(t).unwrap();
        let (path, bytes, _) = append(&repo, Some(&tree), "history.jsonl", line(1)).unwrap();
        assert_eq!(path, "history/000/000000.jsonl");
        let first: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(first["prev"], jsonl::hash_line(b"legacy"));

        let t = tree_with(&repo, &[("history/000/000003.jsonl", b"a\ntorn")]);
        let tree = repo.find_tree(t).unwrap();
        let (path, bytes, _) = append(&repo, Some(&tree), "history.jsonl", line(2)).unwrap();
        assert_eq!(path, "history/000/000003.jsonl");
        assert!(bytes.starts_with(b"a\ntorn\n{"));

        let (path, _, _) = append(&repo, None, "audit.jsonl", line(3)).unwrap();
        assert_eq!(path, "audit/000/000000.jsonl");
    }

    #[test]
    fn the_last_segment_is_found_in_the_highest_fan_out_directory() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let t = tree_with(
            &repo,
            &[
                ("history/000/000999.jsonl", b"a\n"),
                ("history/001/001000.jsonl", b"b\n"),
                ("history/002/readme", b"not a segment\n"),
            ],
        );
        let tree = repo.find_tree(t).unwrap();
        let last = last(&repo, Some(&tree), "history.jsonl").unwrap().unwrap();
        assert_eq!(
            (last.path.as_str(), last.number),
            ("history/001/001000.jsonl", Some(1000))
        );
        assert_eq!(list(&repo, Some(&tree), "history.jsonl").unwrap().len(), 2);
    }

    #[test]
    fn segment_paths_fan_out_per_thousand() {
        assert_eq!(path_of("history.jsonl", 0), "history/000/000000.jsonl");
        assert_eq!(path_of("history.jsonl", 999), "history/000/000999.jsonl");
        assert_eq!(path_of("audit.jsonl", 1234), "audit/001/001234.jsonl");
    }
}
