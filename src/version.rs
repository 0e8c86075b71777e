//! Which version to deploy (SPEC §2): `--version`, then `SHIPGATE_VERSION`, then `[app].version`
//! read from the git repository holding the config.

use std::path::Path;

use crate::config::{Config, VersionSource};
use crate::error::Error;

/// A resolved version and what we know of the commit it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVersion {
    pub version: String,
    /// HEAD of the config's repository, when there is one.
    pub commit: Option<String>,
    /// The work tree had uncommitted changes to tracked files.
    pub dirty: bool,
    /// Where the version came from, for the log (`--version`, `git-short`, …).
    pub source: String,
}

/// Whether `v` is an acceptable version: `^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`.
pub fn is_valid(v: &str) -> bool {
    let mut chars = v.chars();
    v.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// Refuses a version that could be mistaken for anything but a version.
pub fn check(v: &str, from: &str) -> Result<(), Error> {
    if is_valid(v) {
        Ok(())
    } else {
        Err(Error::usage(format!("invalid version `{}` (from {from})", v.escape_debug()))
            .with_hint("a version is 1 to 128 characters: letters, digits, '.', '_', '+' and '-', starting with a letter or digit"))
    }
}

/// Resolves the version. `explicit` is `--version` or `SHIPGATE_VERSION` (clap reads both).
/// `record` says whether the commit and the work tree's state will be recorded (a real
/// deploy): without it, an explicit version needs no repository at all, and none is opened
/// (libgit2's start-up loads OpenSSL and the CA bundle, and the dirty check walks the work
/// tree: most of a dry run's time).
pub fn resolve(
    config: &Config,
    explicit: Option<&str>,
    record: bool,
) -> Result<ResolvedVersion, Error> {
    if let (Some(v), false) = (explicit, record) {
        check(v, "--version / SHIPGATE_VERSION")?;
        return Ok(ResolvedVersion {
            version: v.to_string(),
            commit: None,
            dirty: false,
            source: "--version".into(),
        });
    }
    let repo = git2::Repository::discover(&config.base_dir).ok();
    let commit = repo.as_ref().and_then(head_oid).map(|o| o.to_string());
    let dirty = repo.as_ref().map(is_dirty).unwrap_or(false);
    if let Some(v) = explicit {
        check(v, "--version / SHIPGATE_VERSION")?;
        return Ok(ResolvedVersion {
            version: v.to_string(),
            commit,
            dirty,
            source: "--version".into(),
        });
    }
    let version = match &config.app.version {
        VersionSource::Env(var) => {
            let v = std::env::var(var).map_err(|_| {
                Error::usage(format!(
                    "`[app].version = \"env:{var}\"` but {var} is not set"
                ))
                .with_hint(format!("export {var}, or pass --version"))
            })?;
            check(&v, &format!("env:{var}"))?;
            return Ok(ResolvedVersion {
                version: v,
                commit,
                dirty,
                source: format!("env:{var}"),
            });
        }
        source => {
            let repo = repo.as_ref().ok_or_else(|| not_a_repo(&config.base_dir))?;
            let oid = head_oid(repo).ok_or_else(|| {
                Error::usage("the git repository has no commit yet (HEAD is unborn)")
                    .with_hint("commit first, or pass --version")
            })?;
            match source {
                VersionSource::GitSha => oid.to_string(),
                VersionSource::GitShort => oid.to_string()[..7].to_string(),
                VersionSource::GitDescribe => describe(repo)?,
                VersionSource::Env(_) => unreachable!(),
            }
        }
    };
    let source = match &config.app.version {
        VersionSource::GitShort => "git-short",
        VersionSource::GitSha => "git-sha",
        VersionSource::GitDescribe => "git-describe",
        VersionSource::Env(_) => "env",
    };
    check(&version, source)?;
    Ok(ResolvedVersion {
        version,
        commit,
        dirty,
        source: source.into(),
    })
}

fn not_a_repo(dir: &Path) -> Error {
    Error::usage(format!(
        "cannot read the version from git: `{}` is not inside a git repository",
        dir.display()
    ))
    .with_hint("pass --version V, set SHIPGATE_VERSION, or set [app].version = \"env:VAR\"")
}

fn head_oid(repo: &git2::Repository) -> Option<git2::Oid> {
    repo.head().ok()?.peel_to_commit().ok().map(|c| c.id())
}

fn is_dirty(repo: &git2::Repository) -> bool {
    if repo.is_bare() {
        return false;
    }
    let mut opts = git2::StatusOptions::new();
    // Untracked files (build output, the state dir) do not change what was committed.
    opts.include_untracked(false).include_ignored(false);
    repo.statuses(Some(&mut opts))
        .map(|s| !s.is_empty())
        .unwrap_or(false)
}

fn describe(repo: &git2::Repository) -> Result<String, Error> {
    let mut opts = git2::DescribeOptions::new();
    opts.describe_tags().show_commit_oid_as_fallback(true);
    let mut fmt = git2::DescribeFormatOptions::new();
    fmt.abbreviated_size(7);
    repo.describe(&opts)
        .and_then(|d| d.format(Some(&fmt)))
        .map_err(|e| Error::usage("cannot describe HEAD with git").caused_by(e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_pattern() {
        assert!(is_valid("abc1234"));
        assert!(is_valid("v1.2.3-rc.1+build.5"));
        assert!(!is_valid(""));
        assert!(!is_valid("-v1"));
        assert!(!is_valid("1.0;rm -rf /"));
        assert!(!is_valid("a b"));
        assert!(!is_valid(&"a".repeat(129)));
        assert!(is_valid(&"a".repeat(128)));
    }
}
