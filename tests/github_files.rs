//! The files GitHub runs, and `shipgate --version`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

/// The commit of the checkout this test runs in, as build.rs finds it; `None` outside one.
fn repo_commit(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != repo.canonicalize().ok()? {
        return None;
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// `shipgate --version` names the build's commit, so a bug report says exactly which build.
/// This build's binary, not `SHIPGATE_TEST_BIN`: the commit is this checkout's.
#[test]
fn version_names_the_commit_it_was_built_from() {
    let repo = common::repo();
    let commit = repo_commit(&repo)
        .or_else(|| {
            ["SHIPGATE_COMMIT", "GITHUB_SHA"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
                .map(|s| s.trim().chars().take(12).collect())
        })
        .unwrap_or_else(|| "unknown".into());
    for flag in ["--version", "-V"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("shipgate {} ({commit})\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
