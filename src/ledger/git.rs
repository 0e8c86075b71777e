//! The git store (SPEC §4): `history.jsonl`, `audit.jsonl` and `status.json` live on branch
//! `[state].branch` of `[state].remote`, and the deploy lock is the ref `refs/shipgate/lock`
//! there. Everything goes through git2 objects and refs; nothing is checked out into the work
//! tree and no local ref is touched (fetches and pushes go through an anonymous remote with the
//! named remote's URLs, so not even a remote-tracking ref moves).
//!
//! **Segments.** On the branch, history and audit are stored as bounded segments
//! (`history/000/000123.jsonl`, see [`super::segments`]), the hash chain running on across
//! them; `status.json` is one file at the root. An append reads and rewrites only the last
//! segment and the trees on its path, so its cost and the remote's growth do not depend on the
//! size of history. A branch of the old layout (the whole file at the root) keeps working: its
//! root file is the first, frozen segment.
//!
//! **Cache.** Readers read plain files from a cache outside the work tree,
//! `<git dir>/shipgate/<remote>/<branch>/` ([`super::git_cache`]), kept up to date
//! incrementally: after a push or a fetch only the new bytes are appended. `[state].dir` is not
//! used by the git store, except that a file-store ledger found there is refused (switching a
//! project to the git store must not silently start a second history beside it).
//!
//! **One fetch per command.** The branch is fetched when the store opens (again when the deploy
//! lock was only had after waiting for another holder, and when a reader asks to
//! [`GitStore::sync`], as the approval wait does); this process remembers the tip it last
//! fetched or pushed. Each append is a commit on that tip, pushed without force. A
//! rejected push means someone else appended first: fetch the new tip, re-apply the line on it
//! (recomputing `prev`), push again after a random pause, up to [`MAX_TRIES`] times. A
//! `status.json` write is computed from the cache at the known tip, and recomputed likewise
//! after a rejected push.
//!
//! **Compare-and-swap.** A non-force push is a compare-and-swap on smart transports (the server
//! checks the old value). libgit2's transport for a remote that is a local path checks the old
//! value only when it connects and then overwrites the ref, so pushes to such a remote hold an
//! `flock` on `shipgate-push.lock` in the remote repository for the whole push.
//!
//! **Lock.** `refs/shipgate/lock` points at a chain of commits whose tree holds `lock.json`
//! (state, holder, lease expiry). Taking the lock pushes a "held" commit: a root commit when the
//! ref does not exist, else a child of a "released" or expired tip — a fast-forward, so only one
//! taker wins. A heartbeat thread renews the lease every third of its length; dropping the guard
//! pushes a "released" child. A manual lock (`lock acquire --message`) is a "held" commit whose
//! body carries the [`ManualLock`], with no heartbeat: its lease ends at its ttl, or never
//! (a far-future expiry, which older shipgates respect too) until `lock release`.
//!
//! **Credentials.** `SHIPGATE_GIT_TOKEN`, else `GITHUB_TOKEN`, answers an HTTPS remote's
//! challenge as user `x-access-token`; without either, the `http.<url>.extraheader` values that
//! git would send to the remote (what `actions/checkout` leaves in the clone's config, see
//! [`super::extraheader`]) go with every request, read from the project repository's config
//! (its own file, includes, the global and system ones). A token in the environment replaces
//! them rather than joining them: the server would take the header sent up front and never ask
//! for the token. Then git's credential helper, and SSH keys through the agent.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{Commit, Oid, Repository, Tree};
use serde::{Deserialize, Serialize};

use super::extraheader;
use super::git_cache::Cache;
use super::jsonl::Appended;
use super::lock::{self, LockInfo, LockState, Released};
use super::manual_lock::ManualLock;
use super::segments;
use super::{AUDIT_FILE, HISTORY_FILE, STATUS_FILE};
use crate::config::Config;
use crate::error::Error;

/// How many times a rejected push is re-applied and retried.
pub const MAX_TRIES: u32 = 20;

/// How long a git lock file held by another (non-shipgate) process is waited for.
const FOREIGN_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How many times a push the remote refuses without anyone moving the ref is tried.
const REFUSALS: u32 = 3;

/// The lock's ref on the remote.
pub const LOCK_REF: &str = "refs/shipgate/lock";

/// How long a lease lasts without a heartbeat.
const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// For tests only: the lease length in seconds (so an expired lease can be taken over quickly).
pub const LEASE_ENV: &str = "SHIPGATE_GIT_LEASE_SECS";

/// Marked `[state].dir` as the git store's cache in older versions (which kept it there): such
/// a directory holds no file-store ledger.
const CACHE_MARKER: &str = ".git-store-cache";

const FILES: [&str; 3] = [HISTORY_FILE, AUDIT_FILE, STATUS_FILE];

/// The remote branch and lock ref of one project repository.
#[derive(Debug)]
pub struct GitStore {
    git_dir: PathBuf,
    /// `[state].remote`, for messages.
    remote: String,
    url: String,
    push_url: String,
    /// `url` without credentials, for messages.
    shown_url: String,
    /// The `http.<url>.extraheader` values to send with fetches and with pushes (none when a
    /// token in the environment overrides them).
    fetch_headers: ExtraHeaders,
    push_headers: ExtraHeaders,
    branch: String,
    /// The local cache of the branch (what [`super::Ledger`] reads).
    cache: Cache,
    /// The branch tip this process last fetched or pushed (`Some(None)`: the branch does not
    /// exist), `None` before the first fetch.
    tip: Mutex<Option<Option<Oid>>>,
    /// This process's writes, one at a time (the engine appends from several threads).
    writing: Mutex<()>,
}

enum Pushed {
    Yes,
    /// Someone else moved the ref first (or created it): its tip now.
    Rejected(Option<Oid>),
}

impl GitStore {
    /// Finds the project's repository and `[state].remote`. Exit 2 for a missing repository,
    /// remote or invalid branch name: nothing has changed yet.
    pub fn open(config: &Config) -> Result<GitStore, Error> {
        let state = &config.state;
        let repo = Repository::discover(&config.base_dir).map_err(|e| {
            Error::usage(format!(
                "the git state store needs a git repository, and `{}` is not inside one",
                config.base_dir.display()
            ))
            .caused_by(e.message())
            .with_hint("run shipgate in the project's clone, or set `[state].store = \"file\"`")
        })?;
        let remote = repo.find_remote(&state.remote).map_err(|e| {
            let known: Vec<String> = repo
                .remotes()
                .map(|r| r.iter().flatten().map(str::to_string).collect())
                .unwrap_or_default();
            Error::usage(format!(
                "the repository has no remote `{}` (`[state].remote`)",
                state.remote
            ))
            .caused_by(e.message())
            .with_hint(if known.is_empty() {
                "add one with `git remote add origin URL`, or set `[state].remote`".to_string()
            } else {
                format!("set `[state].remote` to one of: {}", known.join(", "))
            })
        })?;
        let url = remote.url().map(str::to_string).ok_or_else(|| {
            Error::usage(format!(
                "remote `{}` (`[state].remote`) has no usable URL",
                state.remote
            ))
        })?;
        let push_url = remote.pushurl().map(str::to_string).unwrap_or(url.clone());
        if !git2::Reference::is_valid_name(&format!("refs/heads/{}", state.branch)) {
            return Err(Error::usage(format!(
                "`[state].branch` `{}` is not a valid branch name",
                state.branch
            )));
        }
        let config = repo.config().ok();
        let headers = |url: &str| {
            let found = config.as_ref().map(|c| checkout_headers(c, url));
            // Read (and their secrets registered) even when a token overrides them.
            ExtraHeaders(match env_token() {
                Some(_) => Vec::new(),
                None => found.unwrap_or_default(),
            })
        };
        let fetch_headers = headers(&url);
        let push_headers = if push_url == url {
            fetch_headers.clone()
        } else {
            headers(&push_url)
        };
        let cache = Cache::new(repo.commondir(), &state.remote, &state.branch);
        Ok(GitStore {
            git_dir: repo.path().to_path_buf(),
            cache,
            tip: Mutex::new(None),
            remote: state.remote.clone(),
            shown_url: without_credentials(&url),
            fetch_headers,
            push_headers,
            url,
            push_url,
            branch: state.branch.clone(),
            writing: Mutex::new(()),
        })
    }

    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    fn repo(&self) -> Result<Repository, Error> {
        Repository::open(&self.git_dir).map_err(|e| {
            Error::failed(format!("cannot open `{}`", self.git_dir.display()))
                .caused_by(e.message())
        })
    }

    /// `[state].remote` and `[state].branch` for messages.
    pub fn describe(&self) -> String {
        format!(
            "branch `{}` (`[state].branch`) of remote `{}` (`[state].remote`, {})",
            self.branch, self.remote, self.shown_url
        )
    }

    /// Where the lock lives, for `lock status`.
    pub fn lock_location(&self) -> String {
        format!("{LOCK_REF} on {} ({})", self.remote, self.shown_url)
    }

    /// The cache directory readers read (see [`super::git_cache`]).
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// Opens the cache: refuses a `[state].dir` (`state_dir`) that holds a file-store ledger
    /// (switching to the git store would silently leave that history behind), then fetches the
    /// branch and brings the cache to its tip. Exit 2 when the remote cannot be read: nothing
    /// has changed.
    pub fn open_cache(&self, state_dir: &Path) -> Result<(), Error> {
        let has_ledger = FILES.iter().any(|f| state_dir.join(f).exists());
        if has_ledger && !state_dir.join(CACHE_MARKER).exists() {
            return Err(Error::usage(format!(
                "`{}` holds a file-store ledger, and the git store would leave it behind",
                state_dir.display()
            ))
            .with_hint(
                "move its files away (or set `[state].dir` to another directory) before \
                 switching to `[state].store = \"git\"`",
            ));
        }
        self.sync().map_err(|e| {
            let mut err = Error::usage(format!("cannot read {}", self.describe()));
            err.causes.push(e.message);
            err.causes.extend(e.causes);
            err.with_hint(
                "check `[state].remote` and `[state].branch` and that the remote is reachable \
                 (credentials: SHIPGATE_GIT_TOKEN / GITHUB_TOKEN, the `http.<url>.extraheader` \
                 actions/checkout leaves in the clone's git config, or a git credential helper)",
            )
        })
    }

    /// Fetches the branch and brings the cache to the remote tip (for readers that wait for
    /// other machines' records).
    pub fn sync(&self) -> Result<(), Error> {
        let repo = self.repo()?;
        let tip = self.fetch_tip(&repo, &self.branch_ref())?;
        self.set_tip(tip);
        self.cache.update(&repo, tip, false)
    }

    /// Rebuilds the cache from the known tip's tree, trusting nothing it held (for `history
    /// verify`).
    pub fn rebuild_cache(&self) -> Result<(), Error> {
        let known = *self.tip.lock().unwrap_or_else(|e| e.into_inner());
        let repo = self.repo()?;
        let tip = match known {
            Some(tip) => tip,
            None => {
                let tip = self.fetch_tip(&repo, &self.branch_ref())?;
                self.set_tip(tip);
                tip
            }
        };
        self.cache.update(&repo, tip, true)
    }

    /// Where line `line` of the cached `file` lives on the branch: its segment, its line there,
    /// and the segment before when it is a segment's first line.
    pub fn locate(&self, file: &str, line: u64) -> Option<(String, u64, Option<String>)> {
        self.cache.locate(file, line)
    }

    fn set_tip(&self, tip: Option<Oid>) {
        *self.tip.lock().unwrap_or_else(|e| e.into_inner()) = Some(tip);
    }

    /// Appends one record to `file` as a commit pushed to the branch (rewriting only the last
    /// segment), then appends it to the cache.
    pub fn append(&self, file: &'static str, body: serde_json::Value) -> Result<Appended, Error> {
        let kind = body
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("record")
            .to_string();
        let mut appended = None;
        self.commit_retrying(|repo, tree| {
            let (path, bytes, a) = segments::append(repo, tree, file, body.clone())?;
            let message = format!("shipgate: append {kind} {} to {file}", a.id);
            appended = Some(a);
            Ok((vec![(path, bytes)], message))
        })?;
        Ok(appended.expect("a successful commit appended"))
    }

    /// Replaces `file` (`status.json`) in a commit pushed to the branch, its bytes computed by
    /// `bytes` from the cache at the tip the commit goes on (again after a rejected push). A
    /// concurrent change to the same file is overwritten (writers of `status.json` hold the
    /// deploy lock, or restore it from the same history); concurrent appends to the other
    /// files are kept.
    pub fn replace(
        &self,
        file: &'static str,
        mut bytes: impl FnMut() -> Result<Vec<u8>, Error>,
    ) -> Result<(), Error> {
        self.commit_retrying(|_, _| {
            Ok((
                vec![(file.to_string(), bytes()?)],
                format!("shipgate: update {file}"),
            ))
        })
    }

    /// Commits `edit`'s files on the known tip and pushes; on a rejected push, brings the cache
    /// to the new tip and calls `edit` again on it. Brings the cache to the pushed commit after
    /// success (appending the new bytes).
    fn commit_retrying(
        &self,
        mut edit: impl FnMut(
            &Repository,
            Option<&Tree>,
        ) -> Result<(Vec<(String, Vec<u8>)>, String), Error>,
    ) -> Result<(), Error> {
        let _one = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let repo = self.repo()?;
        let refname = self.branch_ref();
        let known = *self.tip.lock().unwrap_or_else(|e| e.into_inner());
        let mut tip = match known {
            Some(tip) => tip,
            None => {
                let tip = self.fetch_tip(&repo, &refname)?;
                self.set_tip(tip);
                tip
            }
        };
        // The edit reads the cache (status.json is computed from it): at the tip it builds on.
        self.cache.update(&repo, tip, false)?;
        for attempt in 1..=MAX_TRIES {
            let parent = tip
                .map(|oid| repo.find_commit(oid))
                .transpose()
                .map_err(|e| git_failed("cannot read the ledger branch", e))?;
            let base = parent
                .as_ref()
                .map(Commit::tree)
                .transpose()
                .map_err(|e| git_failed("cannot read the ledger branch", e))?;
            let (files, message) = edit(&repo, base.as_ref())?;
            let oid = commit(&repo, parent.as_ref(), base.as_ref(), &files, &message)?;
            match self.push(&repo, oid, &refname, tip)? {
                Pushed::Yes => {
                    self.set_tip(Some(oid));
                    return self.cache.update(&repo, Some(oid), false);
                }
                Pushed::Rejected(now) => {
                    tip = now;
                    self.set_tip(now);
                    self.cache.update(&repo, now, false)?;
                    std::thread::sleep(jitter(attempt));
                }
            }
        }
        Err(Error::failed(format!(
            "cannot write to {}: the push was rejected {MAX_TRIES} times (other writers kept \
             moving the branch)",
            self.describe()
        ))
        .with_hint("try again; nothing of this write was recorded"))
    }

    /// The remote's tip of `refname`, fetched into the object database, or `None` when the
    /// remote has no such ref. The fetch goes to a ref of this call's own, deleted at once (so
    /// concurrent processes never contend for a ref, and no ref of the user's moves).
    ///
    /// libgit2 rewrites `<git dir>/shallow` (through `shallow.lock`) on every fetch that
    /// downloads a pack, and prunes the scratch ref's empty directories on delete, so two
    /// fetches into one repository at once can fail each other. Fetches of shipgate processes
    /// are therefore serialised by an `flock` on `<git dir>/shipgate-fetch.lock`; a lock file
    /// held by some other git process is waited out for up to [`FOREIGN_LOCK_WAIT`].
    fn fetch_tip(&self, repo: &Repository, refname: &str) -> Result<Option<Oid>, Error> {
        let what = || format!("cannot fetch `{refname}` from {}", self.shown_url);
        let _serialised = lock_file(&repo.path().join("shipgate-fetch.lock"));
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.fetch_once(repo, refname) {
                Err(e)
                    if e.code() == git2::ErrorCode::Locked
                        && started.elapsed() < FOREIGN_LOCK_WAIT =>
                {
                    attempt += 1;
                    std::thread::sleep(jitter(attempt));
                }
                Err(e) if e.code() == git2::ErrorCode::Locked => {
                    return Err(git_failed(what(), e).with_hint(format!(
                        "another git process kept a lock file in {} for {}s; if none is \
                         running, remove the stale `*.lock` file named above",
                        repo.path().display(),
                        FOREIGN_LOCK_WAIT.as_secs()
                    )));
                }
                Err(e) => return Err(git_failed(what(), e)),
                Ok(tip) => return Ok(tip),
            }
        }
    }

    fn fetch_once(&self, repo: &Repository, refname: &str) -> Result<Option<Oid>, git2::Error> {
        let scratch = format!(
            "refs/shipgate/fetching/{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut remote = repo.remote_anonymous(&self.url)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(repo, !self.fetch_headers.0.is_empty()))
            .custom_headers(&self.fetch_headers.as_strs())
            .update_fetchhead(false)
            .download_tags(git2::AutotagOption::None);
        remote.fetch(&[&format!("+{refname}:{scratch}")], Some(&mut opts), None)?;
        Ok(match repo.find_reference(&scratch) {
            Ok(mut r) => {
                let tip = r.target();
                let _ = r.delete();
                tip
            }
            Err(_) => None,
        })
    }

    /// Pushes `oid` to `refname` without force, expecting the remote's ref at `expected`.
    ///
    /// A rejected push is [`Pushed::Rejected`] only when the ref has really moved (someone else
    /// wrote first). When it has not, the remote refused for another reason (branch
    /// protection, a hook, a lock file left in a local repository by a killed process): after
    /// [`REFUSALS`] tries that is an error quoting the remote, never an endless retry.
    fn push(
        &self,
        repo: &Repository,
        oid: Oid,
        refname: &str,
        expected: Option<Oid>,
    ) -> Result<Pushed, Error> {
        let mut refusals = 0;
        loop {
            let Some(reason) = self.push_once(repo, &format!("{oid}:{refname}"))? else {
                return Ok(Pushed::Yes);
            };
            let now = self.fetch_tip(repo, refname)?;
            if now != expected {
                return Ok(Pushed::Rejected(now));
            }
            refusals += 1;
            if refusals >= REFUSALS {
                return Err(self.refused(refname, &reason));
            }
            std::thread::sleep(jitter(refusals));
        }
    }

    /// One non-force push of `refspec`: `None` when the remote took it, else its reason.
    fn push_once(&self, repo: &Repository, refspec: &str) -> Result<Option<String>, Error> {
        let what = || format!("cannot push to {}", without_credentials(&self.push_url));
        let _serialised = local_push_lock(&self.push_url);
        let mut remote = repo
            .remote_anonymous(&self.push_url)
            .map_err(|e| git_failed(what(), e))?;
        let rejected = RefCell::new(None::<String>);
        let result = {
            let mut cb = callbacks(repo, !self.push_headers.0.is_empty());
            cb.push_update_reference(|_, status| {
                if let Some(msg) = status {
                    *rejected.borrow_mut() = Some(msg.to_string());
                }
                Ok(())
            });
            let mut opts = git2::PushOptions::new();
            opts.remote_callbacks(cb)
                .custom_headers(&self.push_headers.as_strs());
            remote.push(&[refspec], Some(&mut opts))
        };
        match result {
            Ok(()) => Ok(rejected.into_inner()),
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
                Ok(Some(e.message().to_string()))
            }
            Err(e) => Err(git_failed(what(), e)),
        }
    }

    /// The error for a push the remote refused although nobody else moved the ref.
    fn refused(&self, refname: &str, reason: &str) -> Error {
        let err = Error::failed(format!(
            "{} refused to update `{refname}`",
            without_credentials(&self.push_url)
        ))
        .caused_by(reason.trim());
        if reason.contains(".lock") {
            err.with_hint(
                "a lock file in the remote repository (left behind by a killed git process?) \
                 blocks every update of this ref: remove it if no git process is using that \
                 repository; nothing of this write was recorded",
            )
        } else {
            err.with_hint(format!(
                "check that the credentials may push to `{refname}` and that no branch \
                 protection or hook refuses it; nothing of this write was recorded"
            ))
        }
    }

    // ----- the lock -----

    /// The lock ref's tip and its body, `None` when the ref does not exist.
    fn read_lock(&self, repo: &Repository) -> Result<Option<(Oid, LockBody)>, Error> {
        let Some(oid) = self.fetch_tip(repo, LOCK_REF)? else {
            return Ok(None);
        };
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| git_failed("cannot read the lock ref", e))?;
        let body = read_file(repo, Some(&tree), LOCK_FILE)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Some((oid, body)))
    }

    /// Pushes a lock commit on `parent`; `Ok(None)` when someone moved the ref first.
    fn push_lock(
        &self,
        repo: &Repository,
        parent: Option<Oid>,
        body: &LockBody,
    ) -> Result<Option<Oid>, Error> {
        let parent = parent
            .map(|oid| repo.find_commit(oid))
            .transpose()
            .map_err(|e| git_failed("cannot read the lock ref", e))?;
        let json = serde_json::to_vec_pretty(body).unwrap_or_default();
        let message = format!(
            "shipgate lock: {} by {}",
            body.state,
            body.holder.describe()
        );
        let oid = commit(
            repo,
            parent.as_ref(),
            None,
            &[(LOCK_FILE.to_string(), json)],
            &message,
        )?;
        Ok(
            match self.push(repo, oid, LOCK_REF, parent.as_ref().map(Commit::id))? {
                Pushed::Yes => Some(oid),
                Pushed::Rejected(_) => None,
            },
        )
    }
}

/// Takes the lock ref, waiting up to `wait` when another holds an unexpired lease. Held:
/// exit 5 with the holder, as with the file lock; behind a manual lock at once. Returns the
/// lease and the expired manual lock it took over, if any.
pub fn acquire(
    store: &Arc<GitStore>,
    info: &LockInfo,
    wait: Option<Duration>,
    interrupted: impl Fn() -> bool,
) -> Result<(Lease, Option<ManualLock>), Error> {
    let lease = lease_length();
    let deadline = Instant::now() + wait.unwrap_or_default();
    let repo = store.repo()?;
    let mut waited = false;
    loop {
        let current = store.read_lock(&repo)?;
        let holder = match &current {
            Some((_, body)) if body.is_live() => {
                if let Some(manual) = &body.manual {
                    return Err(manual.held_error(wait));
                }
                Some(body.holder.clone())
            }
            _ => None,
        };
        if holder.is_none() {
            let expired = current.as_ref().and_then(|(_, b)| b.expired_manual());
            let body = LockBody::held(info, lease);
            if let Some(tip) = store.push_lock(&repo, current.map(|(oid, _)| oid), &body)? {
                let lease = Lease::start(store.clone(), info.clone(), tip, lease);
                if waited {
                    // Whoever held the lock may have appended since this command fetched: read
                    // the branch again before deciding anything under the lock (the lease is
                    // released if that fails).
                    store.sync()?;
                }
                return Ok((lease, expired));
            }
            // Someone else took it first: look again.
            waited = true;
            continue;
        }
        if interrupted() {
            return Err(Error::failed(
                "interrupted while waiting for the deploy lock; nothing was changed",
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(lock::held_error(&holder, wait));
        }
        waited = true;
        std::thread::sleep(lock::POLL.min(deadline - now));
    }
}

/// `lock acquire`: points the lock ref at a "held" commit carrying `manual` (no heartbeat).
/// Exit 5 while a live lease or another manual lock holds it. Returns the expired manual lock
/// it took over, if any.
pub fn acquire_manual(store: &GitStore, manual: &ManualLock) -> Result<Option<ManualLock>, Error> {
    let repo = store.repo()?;
    for _ in 0..MAX_TRIES {
        let current = store.read_lock(&repo)?;
        if let Some((_, body)) = current.as_ref().filter(|(_, b)| b.is_live()) {
            return Err(match &body.manual {
                Some(held) => held.held_error(None),
                None => lock::held_error(&Some(body.holder.clone()), None),
            });
        }
        let expired = current.as_ref().and_then(|(_, b)| b.expired_manual());
        let body = LockBody::manual(manual);
        if store
            .push_lock(&repo, current.map(|(oid, _)| oid), &body)?
            .is_some()
        {
            return Ok(expired);
        }
    }
    Err(Error::failed(format!(
        "cannot take {LOCK_REF}: it kept moving"
    )))
}

/// The lock's state: held (an unexpired "held" tip), or what an expired holder left; a manual
/// lock (live or expired) is no process holder.
pub fn state(store: &GitStore) -> Result<LockState, Error> {
    let repo = store.repo()?;
    Ok(match store.read_lock(&repo)? {
        Some((_, body)) if body.state == HELD && body.manual.is_some() => LockState {
            manual: body.manual,
            ..LockState::default()
        },
        Some((_, body)) if body.state == HELD => LockState {
            held: body.is_live(),
            info: Some(body.holder),
            manual: None,
        },
        _ => LockState::default(),
    })
}

/// Releases the lock ref: an expired lease is cleared; a live one is refused (exit 5) unless
/// `force`. Either way by pushing a "released" child.
pub fn release(store: &GitStore, force: bool) -> Result<Released, Error> {
    let repo = store.repo()?;
    for _ in 0..MAX_TRIES {
        let Some((tip, body)) = store.read_lock(&repo)? else {
            return Ok(Released::NotHeld);
        };
        if body.state != HELD {
            return Ok(Released::NotHeld);
        }
        let live = body.is_live();
        if let Some(manual) = body.manual {
            // A person's lock: no process is changing anything under it, so no --force.
            if store
                .push_lock(&repo, Some(tip), &LockBody::released(&body.holder))?
                .is_some()
            {
                return Ok(Released::Manual {
                    manual,
                    expired: !live,
                });
            }
            continue;
        }
        if live && !force {
            return Err(lock::live_holder_error(&body.holder));
        }
        let released = LockBody::released(&body.holder);
        if store.push_lock(&repo, Some(tip), &released)?.is_some() {
            let info = body.holder;
            return Ok(if live {
                Released::Forced { info }
            } else {
                Released::Stale { info }
            });
        }
    }
    Err(Error::failed(format!(
        "cannot release {LOCK_REF}: it kept moving"
    )))
}

/// A held lease: a heartbeat thread renews it; dropping it stops the heartbeat and pushes a
/// "released" commit (unless someone force-released or took over the lock meanwhile).
pub struct Lease {
    store: Arc<GitStore>,
    info: LockInfo,
    tip: Arc<Mutex<Option<Oid>>>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    fn start(store: Arc<GitStore>, info: LockInfo, tip: Oid, lease: Duration) -> Lease {
        let tip = Arc::new(Mutex::new(Some(tip)));
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = {
            let (store, info, tip) = (store.clone(), info.clone(), tip.clone());
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(lease / 3) {
                    let mut tip = tip.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(parent) = *tip else { return };
                    let Ok(repo) = store.repo() else { continue };
                    match store.push_lock(&repo, Some(parent), &LockBody::held(&info, lease)) {
                        Ok(Some(next)) => *tip = Some(next),
                        Ok(None) => {
                            crate::say!(
                                "warning: lost the deploy lock ({LOCK_REF}): it was \
                                 force-released or taken over"
                            );
                            *tip = None;
                            return;
                        }
                        // A network hiccup: try again at the next beat.
                        Err(_) => {}
                    }
                }
            })
        };
        Lease {
            store,
            info,
            tip,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let tip = *self.tip.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tip) = tip else { return };
        let released = self.store.repo().and_then(|repo| {
            self.store
                .push_lock(&repo, Some(tip), &LockBody::released(&self.info))
        });
        if !matches!(released, Ok(Some(_))) {
            crate::say!(
                "warning: could not release the deploy lock ({LOCK_REF}); it frees itself when \
                 the lease expires, or run `shipgate lock release --force`"
            );
        }
    }
}

const LOCK_FILE: &str = "lock.json";
const HELD: &str = "held";
const RELEASED: &str = "released";
/// The lease of a manual lock without a ttl.
const NEVER_EXPIRES: &str = "9999-12-31T23:59:59.000Z";

/// `lock.json` on the lock ref.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct LockBody {
    /// `held` or `released`.
    state: String,
    holder: LockInfo,
    /// RFC 3339 UTC; a held lease after this is free to take over.
    expires_at: String,
    /// A person's lock (`lock acquire`): held without a heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    manual: Option<ManualLock>,
}

impl LockBody {
    fn held(info: &LockInfo, lease: Duration) -> LockBody {
        let expires =
            chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        LockBody {
            state: HELD.into(),
            holder: info.clone(),
            expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            manual: None,
        }
    }

    /// A manual lock: its lease ends at its ttl, or (without one) at the end of time.
    fn manual(manual: &ManualLock) -> LockBody {
        let holder = LockInfo {
            host: manual.host.clone(),
            started_at: manual.since.clone(),
            ..LockInfo::current("lock acquire", "", &manual.actor)
        };
        LockBody {
            state: HELD.into(),
            holder,
            expires_at: manual
                .until
                .clone()
                .unwrap_or_else(|| NEVER_EXPIRES.to_string()),
            manual: Some(manual.clone()),
        }
    }

    fn released(info: &LockInfo) -> LockBody {
        LockBody {
            state: RELEASED.into(),
            holder: info.clone(),
            expires_at: String::new(),
            manual: None,
        }
    }

    /// The manual lock of a held tip whose ttl has ended.
    fn expired_manual(&self) -> Option<ManualLock> {
        self.manual
            .clone()
            .filter(|_| self.state == HELD && !self.is_live())
    }

    /// Held and not yet expired.
    fn is_live(&self) -> bool {
        self.state == HELD
            && chrono::DateTime::parse_from_rfc3339(&self.expires_at)
                .is_ok_and(|t| chrono::Utc::now() < t)
    }
}

fn lease_length() -> Duration {
    std::env::var(LEASE_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map_or(DEFAULT_LEASE, Duration::from_secs_f64)
}

// ----- helpers -----

/// A URL without the `user:password@` a remote URL may carry, for messages.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

fn git_failed(what: impl Into<String>, e: git2::Error) -> Error {
    Error::failed(what).caused_by(e.message())
}

fn jitter(attempt: u32) -> Duration {
    Duration::from_millis(fastrand::u64(10..=20 + 30 * u64::from(attempt.min(10))))
}

/// The token of the environment for HTTPS remotes: `SHIPGATE_GIT_TOKEN`, else `GITHUB_TOKEN`.
fn env_token() -> Option<String> {
    ["SHIPGATE_GIT_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Header lines to send; never shown (`Debug` prints how many).
#[derive(Clone)]
struct ExtraHeaders(Vec<String>);

impl ExtraHeaders {
    fn as_strs(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for ExtraHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraHeaders({} redacted)", self.0.len())
    }
}

/// The `http.<url>.extraheader` values git would send to `url`, their secret parts registered
/// with the redactor (and the runner's masker under GitHub Actions) before anything can print
/// them. A value libgit2 would refuse is dropped with a warning that does not quote it.
fn checkout_headers(config: &git2::Config, url: &str) -> Vec<String> {
    let headers = extraheader::for_url(config, url);
    let actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    for secret in headers.iter().flat_map(|h| extraheader::secrets_of(h)) {
        crate::redact::add_secret(&secret);
        if actions && secret.trim().len() >= 4 {
            crate::report::github::add_mask(secret.trim());
        }
    }
    let (sendable, refused): (Vec<String>, Vec<String>) = headers
        .into_iter()
        .partition(|h| extraheader::is_sendable(h));
    if !refused.is_empty() {
        crate::say!(
            "warning: ignoring {} `http.<url>.extraheader` value(s) of the git config for {}: \
             not a `Name: value` header, or one libgit2 sets itself",
            refused.len(),
            without_credentials(url)
        );
    }
    sendable
}

/// Credentials: `SHIPGATE_GIT_TOKEN` / `GITHUB_TOKEN` as an HTTPS token, else git's credential
/// helper; SSH through the agent. Local paths need none. `sent_extraheader`: the request that
/// was challenged carried the config's `http.<url>.extraheader`, so the remote refused it.
fn callbacks(repo: &Repository, sent_extraheader: bool) -> git2::RemoteCallbacks<'static> {
    let config = repo.config().ok();
    let token = env_token();
    let mut tries = 0;
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(move |url, username, allowed| {
        tries += 1;
        if tries > 4 {
            return Err(git2::Error::from_str(
                "authentication failed (tried SHIPGATE_GIT_TOKEN / GITHUB_TOKEN and the git \
                 credential helper)",
            ));
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            if let (Some(token), 1) = (&token, tries) {
                return git2::Cred::userpass_plaintext("x-access-token", token);
            }
            if let Some(config) = &config {
                if let Ok(cred) = git2::Cred::credential_helper(config, url, username) {
                    return Ok(cred);
                }
            }
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(git2::CredentialType::DEFAULT) {
            return git2::Cred::default();
        }
        Err(git2::Error::from_str(if sent_extraheader {
            "the remote refused the `http.<url>.extraheader` credential of the git config \
             (an expired or revoked token? actions/checkout's lasts as long as its job) and \
             there is no other"
        } else {
            "no credentials for this remote"
        }))
    });
    cb
}

/// For a remote that is a local path: an exclusive `flock` on `shipgate-push.lock` in it, held
/// for one push (see the module docs). `None` for network remotes or when it cannot be taken.
fn local_push_lock(url: &str) -> Option<std::fs::File> {
    let path = if let Some(p) = url.strip_prefix("file://") {
        PathBuf::from(p)
    } else if url.contains("://") || url.split_once(':').is_some_and(|(h, _)| !h.contains('/')) {
        return None;
    } else {
        PathBuf::from(url)
    };
    if !path.is_dir() {
        return None;
    }
    lock_file(&path.join("shipgate-push.lock"))
}

/// An exclusive `flock` on `path` (created if missing), held until the file is dropped; `None`
/// when the file cannot be created (a read-only repository: then nothing is serialised, and
/// libgit2's own lock files still refuse a conflicting write).
fn lock_file(path: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    file.lock().ok()?;
    Some(file)
}

fn signature() -> Result<git2::Signature<'static>, Error> {
    git2::Signature::now("shipgate", "shipgate@localhost")
        .map_err(|e| git_failed("cannot make a commit signature", e))
}

/// A commit of `base` with `files` (paths with `/`) replaced, on `parent` (a root commit without
/// one). Only the trees on the files' paths are rewritten.
fn commit(
    repo: &Repository,
    parent: Option<&Commit>,
    base: Option<&Tree>,
    files: &[(String, Vec<u8>)],
    message: &str,
) -> Result<Oid, Error> {
    let fail = |e| git_failed("cannot write a commit to the local repository", e);
    let mut tree = base.map(Tree::id);
    for (path, bytes) in files {
        let blob = repo.blob(bytes).map_err(fail)?;
        let parts: Vec<&str> = path.split('/').collect();
        let at = tree.map(|t| repo.find_tree(t)).transpose().map_err(fail)?;
        tree = Some(put(repo, at.as_ref(), &parts, blob).map_err(fail)?);
    }
    let tree = match tree {
        Some(t) => repo.find_tree(t).map_err(fail)?,
        None => repo
            .find_tree(
                repo.treebuilder(None)
                    .and_then(|b| b.write())
                    .map_err(fail)?,
            )
            .map_err(fail)?,
    };
    let sig = signature()?;
    let parents: Vec<&Commit> = parent.into_iter().collect();
    repo.commit(None, &sig, &sig, message, &tree, &parents)
        .map_err(fail)
}

/// `tree` (or an empty one) with the blob `blob` at `path`, the trees on the way rewritten.
fn put(
    repo: &Repository,
    tree: Option<&Tree>,
    path: &[&str],
    blob: Oid,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(tree)?;
    match path {
        [] => return Err(git2::Error::from_str("empty path")),
        [name] => {
            builder.insert(name, blob, 0o100644)?;
        }
        [dir, rest @ ..] => {
            let sub = tree
                .and_then(|t| t.get_name(dir))
                .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
                .map(|e| repo.find_tree(e.id()))
                .transpose()?;
            let oid = put(repo, sub.as_ref(), rest, blob)?;
            builder.insert(dir, oid, 0o040000)?;
        }
    }
    builder.write()
}

/// A file's bytes in `tree`, `None` when absent.
fn read_file(repo: &Repository, tree: Option<&Tree>, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let Some(entry) = tree.and_then(|t| t.get_name(name)) else {
        return Ok(None);
    };
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| git_failed(format!("cannot read `{name}` from the ledger branch"), e))?;
    Ok(Some(blob.content().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_carry_no_credentials() {
        assert_eq!(
            without_credentials("https://x-access-token:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            without_credentials("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            without_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(without_credentials("/srv/git/r.git"), "/srv/git/r.git");
    }

    #[test]
    fn a_checkout_header_is_registered_as_a_secret_in_every_form() {
        use base64::Engine;
        let token = "ghs_unitT3stJobToken";
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!("[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic {b64}\n"),
        )
        .unwrap();
        let mut config = git2::Config::new().unwrap();
        config
            .add_file(&path, git2::ConfigLevel::Local, false)
            .unwrap();

        let headers = checkout_headers(&config, "https://github.com/o/r.git");
        assert_eq!(headers, [format!("AUTHORIZATION: basic {b64}")]);
        let shown = crate::redact::redact(&format!(
            "{} | {b64} | x-access-token:{token} | {token}",
            headers[0]
        ));
        assert_eq!(shown, "AUTHORIZATION: *** | *** | *** | ***");
        assert_eq!(
            format!("{:?}", ExtraHeaders(headers)),
            "ExtraHeaders(1 redacted)"
        );
    }

    #[test]
    fn a_lease_is_live_until_it_expires_or_is_released() {
        let info = LockInfo::current("deploy", "d1", "alice");
        assert!(LockBody::held(&info, Duration::from_secs(60)).is_live());
        assert!(!LockBody::held(&info, Duration::from_millis(0)).is_live());
        assert!(!LockBody::released(&info).is_live());
        assert!(!LockBody::default().is_live());
    }
}
