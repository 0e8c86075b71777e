//! Stamps the commit into the binary: `shipgate --version` prints `shipgate 0.1.0 (<commit>)`.
//!
//! The commit is `git rev-parse --short=12 HEAD` when the crate is built from its own git
//! checkout (a linked worktree included, where `.git` is a file), else `SHIPGATE_COMMIT` from the
//! environment (the release workflow sets it), else `unknown`. Never `GITHUB_SHA`: when the
//! action builds itself from source in a user's workflow, that is the user's commit, not
//! shipgate's. Nothing
//! here fails the build: a missing git only costs the stamp.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHIPGATE_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = from_git(&manifest_dir)
        .or_else(|| from_env("SHIPGATE_COMMIT"))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SHIPGATE_COMMIT={commit}");
}

/// The short HEAD of the checkout the crate is built from. `None` when git is missing, or when
/// the manifest sits in someone else's repository (an unpacked crate under a home directory
/// kept in git), whose commit would be a lie.
fn from_git(dir: &Path) -> Option<String> {
    let toplevel = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&toplevel), dir) {
        return None;
    }
    watch_head(dir);
    git(dir, &["rev-parse", "--short=12", "HEAD"])
}

/// Rebuild when HEAD moves: HEAD itself (a checkout), the branch it points to (a commit) and
/// packed-refs (a branch whose ref was packed). `--git-path` resolves each file in a linked
/// worktree too, where HEAD is per worktree and the refs are in the common dir. Only files
/// that exist are named: cargo reruns on every build for a missing one.
fn watch_head(dir: &Path) {
    let mut files = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
    }
    for file in files {
        // `--path-format` is git 2.31; an older git answers relative to `dir`.
        let path = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-path", &file],
        )
        .map(PathBuf::from)
        .or_else(|| git(dir, &["rev-parse", "--git-path", &file]).map(|p| dir.join(p)));
        if let Some(path) = path.filter(|p| p.is_file()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// A commit from the environment, shortened like git's (a full 40-digit SHA to 12).
fn from_env(var: &str) -> Option<String> {
    let value = std::env::var(var).ok()?;
    let value = value.trim();
    let ok = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| value.chars().take(12).collect())
}
