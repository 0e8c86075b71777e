//! The git store (SPEC §4): the ledger on a branch of a local bare "origin", the lock a ref.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::{code, Project};

const BRANCH: &str = "shipgate/ledger";

/// Runs git in `dir` with a fixed identity; panics on failure; returns stdout.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    git_command(dir, args).output().expect("run git")
}

/// git in `dir` with a fixed identity and no system or user configuration.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    cmd
}

/// A bare repository standing in for the shared remote.
pub(crate) fn bare_remote() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "--bare", "-b", "main"]);
    dir
}

/// A clone of the project: the scratch exec pipeline with the git store, committed in its own
/// repository whose `origin` is `remote`.
pub(crate) fn clone_of(remote: &Path) -> Project {
    clone_with_origin(remote.to_str().unwrap())
}

/// [`clone_of`] with any URL as `origin`.
pub(crate) fn clone_with_origin(url: &str) -> Project {
    let p = exec_project(&format!(
        "{THREE_STAGES}\n[state]\nstore = \"git\"\nremote = \"origin\"\n"
    ));
    p.write(".gitignore", ".shipgate/\nstate/\n");
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "init"]);
    git(p.path(), &["remote", "add", "origin", url]);
    p
}

/// A file on the remote's ledger branch as readers see it: a ledger file is its segments
/// concatenated in order (after the old layout's root file, if any); `status.json` is itself.
pub(crate) fn remote_file(remote: &Path, file: &str) -> String {
    let Some(dir) = file.strip_suffix(".jsonl") else {
        return git(remote, &["show", &format!("{BRANCH}:{file}")]);
    };
    // Tree order: `history.jsonl` before `history/`, segments by their zero-padded numbers.
    segment_paths(remote, dir)
        .iter()
        .map(|path| git(remote, &["show", &format!("{BRANCH}:{path}")]))
        .collect()
}

/// The paths of a ledger file's segments on the branch, in order.
pub(crate) fn segment_paths(remote: &Path, dir: &str) -> Vec<String> {
    git(remote, &["ls-tree", "-r", "--name-only", BRANCH])
        .lines()
        .filter(|p| *p == format!("{dir}.jsonl") || p.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// The git store's cache in clone `p`: under its git dir, outside the work tree.
pub(crate) fn cache_path(p: &Project, file: &str) -> std::path::PathBuf {
    p.path()
        .join(".git/shipgate/origin")
        .join(BRANCH)
        .join(file)
}

/// A file of the git store's cache in clone `p`.
pub(crate) fn cache_file(p: &Project, file: &str) -> String {
    std::fs::read_to_string(cache_path(p, file)).unwrap_or_default()
}

pub(crate) fn remote_lock(remote: &Path) -> Option<serde_json::Value> {
    let out = git_output(remote, &["show", "refs/shipgate/lock:lock.json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

pub(crate) fn records(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_deploy_commits_the_ledger_to_the_remote_branch_and_leaves_the_work_tree_alone() {
    let remote = bare_remote();
    let p = clone_of(remote.path());
    let head = git(p.path(), &["rev-parse", "HEAD"]);

    p.run(&["deploy"]).expect(code::SUCCESS);

    let files = git(remote.path(), &["ls-tree", "--name-only", BRANCH]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["audit", "history", "status.json"]
    );
    assert_eq!(
        segment_paths(remote.path(), "history"),
        ["history/000/000000.jsonl"]
    );
    let history = records(&remote_file(remote.path(), "history.jsonl"));
    let deploys: Vec<_> = history.iter().filter(|r| r["kind"] == "deploy").collect();
    assert_eq!(deploys.last().unwrap()["status"], "success");
    assert_eq!(history[0]["prev"], "0".repeat(64));
    let status: serde_json::Value =
        serde_json::from_str(&remote_file(remote.path(), "status.json")).unwrap();
    assert_eq!(status["regions"]["fra"]["version"], "v2");
    // Each append is a commit of its own, by shipgate.
    let log = git(remote.path(), &["log", "--format=%an <%ae> %s", BRANCH]);
    assert!(log.lines().count() >= history.len(), "{log}");
    assert!(log.starts_with("shipgate <shipgate@localhost> "), "{log}");
    // The lock was taken and released.
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");

    // The cache (under .git, not in the work tree) matches the branch, and the chain verifies.
    assert_eq!(
        cache_file(&p, "history.jsonl"),
        remote_file(remote.path(), "history.jsonl")
    );
    assert!(!p.state_dir().exists(), "a cache in the work tree");
    p.run(&["history", "verify"]).expect(code::SUCCESS);

    // The work tree, HEAD and the local branches are untouched.
    assert_eq!(git(p.path(), &["rev-parse", "HEAD"]), head);
    assert_eq!(git(p.path(), &["status", "--porcelain"]), "");
    assert_eq!(
        git(p.path(), &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main\n"
    );

    // Another clone reads the same history from the remote.
    let other = clone_of(remote.path());
    let r = other
        .run(&["history", "--format", "json"])
        .expect(code::SUCCESS);
    assert!(r.stdout.contains("\"success\""), "{}", r.stdout);
    other.run(&["history", "verify"]).expect(code::SUCCESS);
    let s = other
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    let ewr = s["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "ewr");
    assert_eq!(ewr.unwrap()["version"], "v2", "{s}");
}

#[test]
fn concurrent_writers_in_two_clones_lose_nothing_and_keep_the_chain() {
    let remote = bare_remote();
    let clones = [clone_of(remote.path()), clone_of(remote.path())];
    const EACH: usize = 6;
    let mut children = Vec::new();
    for (c, p) in clones.iter().enumerate() {
        for i in 0..EACH {
            let sha = format!("c{c}-{i}");
            children.push(
                p.command(&[
                    "publish-event",
                    "--platform",
                    "render",
                    "--event-type",
                    "success",
                    "--commit-sha",
                    &sha,
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
            );
        }
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = remote_file(remote.path(), "history.jsonl");
    let events: Vec<_> = records(&text)
        .into_iter()
        .filter(|r| r["kind"] == "event")
        .collect();
    let mut shas: Vec<String> = events
        .iter()
        .map(|r| r.to_string())
        .filter_map(|s| {
            (0..2)
                .flat_map(|c| (0..EACH).map(move |i| format!("c{c}-{i}")))
                .find(|sha| s.contains(&format!("\"{sha}\"")))
        })
        .collect();
    shas.sort();
    shas.dedup();
    assert_eq!(events.len(), 2 * EACH, "{text}");
    assert_eq!(shas.len(), 2 * EACH, "{text}");
    // Every line chains to the one before it.
    let lines: Vec<&str> = text.lines().collect();
    for w in lines.windows(2) {
        let next: serde_json::Value = serde_json::from_str(w[1]).unwrap();
        assert_eq!(next["prev"], sha256_hex(w[0]), "{text}");
    }
    for p in &clones {
        let r = p.run(&["history", "verify"]).expect(code::SUCCESS);
        assert!(!r.stderr.contains("problem"), "{}", r.stderr);
        assert_eq!(cache_file(p, "history.jsonl"), text);
    }
}

/// Records a render success event for commit `sha` in `p`'s history; it must succeed.
fn publish(p: &crate::common::Project, sha: &str) {
    p.run(&[
        "publish-event",
        "--platform",
        "render",
        "--event-type",
        "success",
        "--commit-sha",
        sha,
    ])
    .expect(code::SUCCESS);
}

/// libgit2 rewrites `.git/shallow` through `shallow.lock` after every fetch that downloads a
/// pack, and fails the fetch when that lock file exists (another process fetching into the same
/// clone: CI once failed so). The objects are in by then, so a retried fetch needs no pack and
/// succeeds; the lock file, which is not shipgate's, is left alone.
#[test]
fn a_fetch_that_meets_a_git_lock_file_is_retried() {
    let remote = bare_remote();
    let (first, second) = (clone_of(remote.path()), clone_of(remote.path()));
    publish(&first, "first");
    // The second clone must download the first clone's commit, so its fetch writes `shallow`.
    let lock = second.path().join(".git/shallow.lock");
    std::fs::write(&lock, "").unwrap();
    publish(&second, "second");
    assert!(lock.exists(), "another process's lock file was removed");
    let text = remote_file(remote.path(), "history.jsonl");
    assert!(
        text.contains("\"first\"") && text.contains("\"second\""),
        "{text}"
    );
}

fn sha256_hex(line: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(line.as_bytes()))
}

/// Polls until the remote's lock ref says held.
fn wait_until_held(remote: &Path) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(lock) = remote_lock(remote).filter(|l| l["state"] == "held") {
            return lock;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_lock_ref_is_exclusive_across_clones_and_released_after_the_deploy() {
    let remote = bare_remote();
    let (mut a, b) = (clone_of(remote.path()), clone_of(remote.path()));
    // A 1 s lease, renewed by the heartbeat: still held long after its first expiry.
    a.env("DEPLOY_SLEEP", "2")
        .env("SHIPGATE_GIT_LEASE_SECS", "1");
    let running = a
        .command(&["deploy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = wait_until_held(remote.path());
    let holder = &lock["holder"];
    std::thread::sleep(Duration::from_millis(1500));

    let r = b.run(&["deploy"]).expect(code::LOCKED);
    assert!(
        r.stderr.contains("another deploy holds the lock"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(holder["deploy_id"].as_str().unwrap()),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("pid {}", running.id())),
        "{}",
        r.stderr
    );
    let s = b
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(s["held"], true);
    assert_eq!(s["holder"]["deploy_id"], holder["deploy_id"]);
    b.run(&["lock", "release"]).expect(code::LOCKED);
    assert_eq!(b.live("lhr"), "v1", "the refused deploy changed nothing");

    let out = running.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");
    // Freed: the other clone deploys now, after the first clone's deploy in the same history.
    b.run(&["deploy"]).expect(code::SUCCESS);
    let history = records(&remote_file(remote.path(), "history.jsonl"));
    let finished = history
        .iter()
        .filter(|r| r["kind"] == "deploy" && r["status"] == "success")
        .count();
    assert_eq!(finished, 2);
    b.run(&["history", "verify"]).expect(code::SUCCESS);
}

/// Runs git in `dir` with `input` on stdin; panics on failure; returns stdout trimmed.
fn git_with_input(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = git_command(dir, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Points the remote's lock ref at a "held" commit of a holder that is gone (what a SIGKILLed
/// shipgate leaves behind), its lease ending `expires_in` from now (negative: already expired).
/// Crafted with git plumbing, so no process has to be killed in the middle of a push.
fn plant_held_lock(remote: &Path, deploy_id: &str, expires_in: chrono::Duration) -> String {
    let expires =
        (chrono::Utc::now() + expires_in).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = serde_json::json!({
        "state": "held",
        "holder": {
            "pid": 999_999,
            "host": "ci-runner-7",
            "actor": "github:octocat",
            "deploy_id": deploy_id,
            "started_at": "2026-11-24T03:00:00.000Z",
            "command": "deploy",
        },
        "expires_at": expires,
    });
    let blob = git_with_input(remote, &["hash-object", "-w", "--stdin"], &body.to_string());
    let tree = git_with_input(
        remote,
        &["mktree"],
        &format!("100644 blob {blob}\tlock.json\n"),
    );
    let parent = git_output(
        remote,
        &["rev-parse", "--verify", "-q", "refs/shipgate/lock"],
    );
    let parent = String::from_utf8_lossy(&parent.stdout).trim().to_string();
    let mut args = vec![
        "commit-tree",
        tree.as_str(),
        "-m",
        "held by a crashed holder",
    ];
    if !parent.is_empty() {
        args.extend(["-p", parent.as_str()]);
    }
    let commit = git_with_input(remote, &args, "");
    git(remote, &["update-ref", "refs/shipgate/lock", &commit]);
    expires
}

#[test]
fn an_expired_lease_is_taken_over_and_a_live_one_only_force_released() {
    let remote = bare_remote();
    let (a, b) = (clone_of(remote.path()), clone_of(remote.path()));
    a.run(&["deploy"]).expect(code::SUCCESS);

    // A holder that died without releasing: refused while its lease runs, free once it ends.
    let expires = plant_held_lock(remote.path(), "01CRASHED", chrono::Duration::seconds(2));
    let r = b.run(&["deploy"]).expect(code::LOCKED);
    assert!(
        r.stderr.contains("pid 999999 on ci-runner-7"),
        "{}",
        r.stderr
    );
    let expires = chrono::DateTime::parse_from_rfc3339(&expires)
        .unwrap()
        .with_timezone(&chrono::Utc);
    while chrono::Utc::now() < expires + chrono::Duration::milliseconds(300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = b
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(s["held"], false, "{s}");
    assert_eq!(s["stale"]["deploy_id"], "01CRASHED", "{s}");
    b.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");

    // A live holder (long lease) is refused to `release` and freed by `release --force`.
    plant_held_lock(remote.path(), "01STUCK", chrono::Duration::minutes(10));
    a.run(&["deploy"]).expect(code::LOCKED);
    a.run(&["lock", "release"]).expect(code::LOCKED);
    let r = a.run(&["lock", "release", "--force"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("FORCE-RELEASED"), "{}", r.stderr);
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");
    let audit = remote_file(remote.path(), "audit.jsonl");
    assert!(
        audit.contains("01STUCK"),
        "force release not audited: {audit}"
    );
    a.run(&["deploy"]).expect(code::SUCCESS);
    a.run(&["history", "verify"]).expect(code::SUCCESS);
}

/// Runs shipgate with a deadline: a refused push must end the command, never spin.
fn run_within(p: &crate::common::Project, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = p
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("shipgate {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A push the remote refuses without anyone else moving the ref (here: a ref lock file a killed
/// git process left in the remote repository) is an error quoting the remote, not 20 retries
/// blamed on "other writers", and for the lock ref not an endless loop.
#[test]
fn a_push_the_remote_refuses_is_an_error_quoting_it_and_records_nothing() {
    let remote = bare_remote();
    let p = clone_of(remote.path());
    p.run(&["deploy"]).expect(code::SUCCESS);
    let before = remote_file(remote.path(), "history.jsonl");

    let stale = remote.path().join("refs/heads/shipgate/ledger.lock");
    std::fs::write(&stale, "").unwrap();
    let out = run_within(
        &p,
        &[
            "publish-event",
            "--platform",
            "render",
            "--event-type",
            "success",
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused to update `refs/heads/shipgate/ledger`"),
        "{stderr}"
    );
    assert!(stderr.contains("ledger.lock"), "{stderr}");
    assert!(
        stderr.contains("hint: a lock file in the remote repository"),
        "{stderr}"
    );
    assert!(!stderr.contains("other writers"), "{stderr}");
    std::fs::remove_file(&stale).unwrap();
    assert_eq!(remote_file(remote.path(), "history.jsonl"), before);

    let stale = remote.path().join("refs/shipgate/lock.lock");
    std::fs::write(&stale, "").unwrap();
    let out = run_within(&p, &["deploy"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused to update `refs/shipgate/lock`"),
        "{stderr}"
    );
    assert_eq!(
        remote_file(remote.path(), "history.jsonl"),
        before,
        "a deploy started"
    );
    std::fs::remove_file(&stale).unwrap();

    // With the lock files gone, both work again.
    publish(&p, "again");
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.run(&["history", "verify"]).expect(code::SUCCESS);
}

#[test]
fn an_unusable_repository_or_remote_is_a_usage_error_naming_the_keys() {
    // Not inside a git repository.
    let p = exec_project(&format!(
        "{THREE_STAGES}\n[state]\nstore = \"git\"\nremote = \"origin\"\n"
    ));
    let r = p.run(&["history"]).expect(code::USAGE);
    assert!(r.stderr.contains("not inside"), "{}", r.stderr);

    // No such remote.
    let remote = bare_remote();
    let p = clone_of(remote.path());
    git(p.path(), &["remote", "rename", "origin", "upstream"]);
    let r = p.run(&["deploy"]).expect(code::USAGE);
    assert!(r.stderr.contains("`[state].remote`"), "{}", r.stderr);
    assert!(r.stderr.contains("upstream"), "{}", r.stderr);

    // An unreachable remote.
    git(
        p.path(),
        &[
            "remote",
            "add",
            "origin",
            "/nonexistent/shipgate-remote.git",
        ],
    );
    let r = p.run(&["deploy"]).expect(code::USAGE);
    assert!(r.stderr.contains("`[state].branch`"), "{}", r.stderr);
    assert!(r.stderr.contains("`[state].remote`"), "{}", r.stderr);
    assert_eq!(p.live("lhr"), "v1");
    assert!(!p.state_dir().join("history.jsonl").exists());

    // A file-store ledger in `[state].dir` is not overwritten by the cache.
    let p = clone_of(remote.path());
    p.write(".shipgate/history.jsonl", "");
    let r = p.run(&["history"]).expect(code::USAGE);
    assert!(r.stderr.contains("file-store ledger"), "{}", r.stderr);
}

/// For tests: the git store's segment size (`SHIPGATE_GIT_SEGMENT_BYTES`).
const SEGMENT_ENV: &str = "SHIPGATE_GIT_SEGMENT_BYTES";

/// The remote's ledger branch tip.
fn tip(remote: &Path) -> String {
    git(remote, &["rev-parse", BRANCH]).trim().to_string()
}

/// How a planted branch stores history.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// As older shipgates wrote it: the whole file at the root.
    Root,
    /// Segments of at most this many bytes under `history/NNN/`.
    Segments(usize),
}

/// `count` event records chained from genesis, about 400 bytes each.
fn chained_lines(count: usize) -> Vec<String> {
    let mut prev = "0".repeat(64);
    (0..count)
        .map(|i| {
            let line = serde_json::json!({
                "schema": 1,
                "id": format!("01JGEN{i:020}"),
                "ts": "2026-11-01T00:00:00.000Z",
                "prev": prev,
                "kind": "event",
                "event": {"event_type": "success", "platform": "render", "commit_sha": format!("{i:040x}")},
                "delivered": [],
                "detail": "x".repeat(200),
            })
            .to_string();
            prev = sha256_hex(&line);
            line + "\n"
        })
        .collect()
}

/// Points the remote's ledger branch at one commit holding `lines` (plus `files` at the root)
/// in `layout`, made straight with git2: fast at any size.
fn plant_branch(remote: &Path, lines: &[String], layout: Layout, files: &[(&str, &str)]) {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    match layout {
        Layout::Root => {
            let blob = repo.blob(lines.concat().as_bytes()).unwrap();
            root.insert("history.jsonl", blob, 0o100644).unwrap();
        }
        Layout::Segments(max) => {
            let mut segments: Vec<String> = vec![String::new()];
            for line in lines {
                let last = segments.last_mut().unwrap();
                if !last.is_empty() && last.len() + line.len() > max {
                    segments.push(line.clone());
                } else {
                    last.push_str(line);
                }
            }
            let mut fans: std::collections::BTreeMap<usize, git2::TreeBuilder> = Default::default();
            for (n, seg) in segments.iter().enumerate() {
                let blob = repo.blob(seg.as_bytes()).unwrap();
                fans.entry(n / 1000)
                    .or_insert_with(|| repo.treebuilder(None).unwrap())
                    .insert(format!("{n:06}.jsonl"), blob, 0o100644)
                    .unwrap();
            }
            let mut history = repo.treebuilder(None).unwrap();
            for (fan, builder) in fans {
                history
                    .insert(format!("{fan:03}"), builder.write().unwrap(), 0o040000)
                    .unwrap();
            }
            root.insert("history", history.write().unwrap(), 0o040000)
                .unwrap();
        }
    }
    for (name, text) in files {
        root.insert(name, repo.blob(text.as_bytes()).unwrap(), 0o100644)
            .unwrap();
    }
    let tree = repo.find_tree(root.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let commit = repo
        .commit(None, &sig, &sig, "planted history", &tree, &[])
        .unwrap();
    repo.reference(&format!("refs/heads/{BRANCH}"), commit, true, "plant")
        .unwrap();
}

/// The bytes of the objects `new` has and `old` has not (uncompressed): what the remote grew by.
fn object_bytes(remote: &Path, old: &str, new: &str) -> u64 {
    let objects = git(remote, &["rev-list", "--objects", &format!("{old}..{new}")]);
    let ids: Vec<&str> = objects
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    git_with_input(
        remote,
        &["cat-file", "--batch-check=%(objectsize)"],
        &(ids.join("\n") + "\n"),
    )
    .lines()
    .map(|s| s.parse::<u64>().unwrap())
    .sum()
}

/// Issue 17: each append rewrote the whole `history.jsonl` as a new blob (at 100k records the
/// remote grew 8.9 MB per append). Now an append pushes one bounded segment and the trees on
/// its path: the same bound at 1k and 20k records, on the segmented layout and on a branch of
/// the old layout (whose root file is frozen).
#[test]
fn an_append_at_100k_records_pushed_the_whole_44_mb_history() {
    const SEGMENT: usize = 64 * 1024;
    // One segment, the record, the trees on its path (≤ 1000 entries of ~40 bytes) and the
    // commit.
    const BOUND: u64 = SEGMENT as u64 + 48 * 1024;
    for layout in [Layout::Root, Layout::Segments(SEGMENT)] {
        for count in [1_000, 20_000] {
            let remote = bare_remote();
            let lines = chained_lines(count);
            plant_branch(remote.path(), &lines, layout, &[]);
            let mut p = clone_of(remote.path());
            p.env(SEGMENT_ENV, &SEGMENT.to_string());
            // The clone's first fetch downloads everything once.
            p.run(&["history", "--last", "1"]).expect(code::SUCCESS);

            let before = tip(remote.path());
            publish(&p, "bounded");
            let grown = object_bytes(remote.path(), &before, &tip(remote.path()));
            assert!(
                grown <= BOUND,
                "{layout:?} at {count} records: one append grew the remote by {grown} bytes \
                 (bound {BOUND})"
            );
            let history = remote_file(remote.path(), "history.jsonl");
            assert!(history.starts_with(&lines.concat()), "{layout:?} {count}");
            assert_eq!(history.lines().count(), count + 1);
            p.run(&["history", "verify"]).expect(code::SUCCESS);
        }
    }
}

/// A branch an older shipgate wrote (whole files at the root) keeps working: its root file is
/// the first, frozen segment, new records go to segments after it, the chain runs on across the
/// join, and readers see both.
#[test]
fn a_branch_of_the_old_layout_keeps_its_root_file_as_the_first_segment() {
    // A real deploy's files, put at the branch's root as older shipgates kept them.
    let old = exec_project(THREE_STAGES);
    old.run(&["deploy"]).expect(code::SUCCESS);
    let (history, audit, status) = (
        old.read(".shipgate/history.jsonl"),
        old.read(".shipgate/audit.jsonl"),
        old.read(".shipgate/status.json"),
    );
    let first_deploy = records(&history)[0]["deploy_id"].clone();
    let remote = bare_remote();
    let lines: Vec<String> = history.lines().map(|l| format!("{l}\n")).collect();
    plant_branch(
        remote.path(),
        &lines,
        Layout::Root,
        &[("audit.jsonl", &audit), ("status.json", &status)],
    );

    let mut p = clone_of(remote.path());
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);

    // The root file is untouched; the new records start segment 0, chained to its last line.
    assert_eq!(
        git(remote.path(), &["show", &format!("{BRANCH}:history.jsonl")]),
        history
    );
    assert_eq!(
        segment_paths(remote.path(), "history"),
        ["history.jsonl", "history/000/000000.jsonl"]
    );
    let segment = git(
        remote.path(),
        &["show", &format!("{BRANCH}:history/000/000000.jsonl")],
    );
    let joined = records(&segment)[0]["prev"].clone();
    assert_eq!(joined, sha256_hex(history.lines().last().unwrap()));

    p.run(&["history", "verify"]).expect(code::SUCCESS);
    let shown = p
        .run(&["history", "--format", "json"])
        .expect(code::SUCCESS)
        .stdout;
    let second_deploy = records(&segment)[0]["deploy_id"].clone();
    assert_ne!(first_deploy, second_deploy);
    for id in [&first_deploy, &second_deploy] {
        assert!(
            shown.contains(id.as_str().unwrap()),
            "{id} not shown: {shown}"
        );
    }
    let s = p
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert!(s.to_string().contains("\"v3\""), "{s}");
}

/// A rewritten branch whose segments no longer join (the last line of one segment edited, so
/// the next segment's first `prev` is not its hash): `history verify` names the broken join
/// and both segments, in a clone that had cached the branch before and in a fresh one.
#[test]
fn history_verify_names_a_broken_join_between_segments() {
    let remote = bare_remote();
    let mut p = clone_of(remote.path());
    p.env(SEGMENT_ENV, "2000");
    p.run(&["deploy"]).expect(code::SUCCESS);
    let segments = segment_paths(remote.path(), "history");
    assert!(segments.len() >= 3, "{segments:?}");
    p.run(&["history", "verify"]).expect(code::SUCCESS);

    // Edit the last line of the first segment, in a commit on the tip.
    let repo = git2::Repository::open_bare(remote.path()).unwrap();
    let parent = repo
        .find_reference(&format!("refs/heads/{BRANCH}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let text = git(
        remote.path(),
        &["show", &format!("{BRANCH}:{}", segments[0])],
    );
    let (head, last) = text
        .trim_end()
        .rsplit_once('\n')
        .map_or(("", text.trim_end()), |(h, l)| (h, l));
    let edited = last.replacen("\"ts\":\"2", "\"ts\":\"1", 1);
    assert_ne!(edited, last);
    let edited = if head.is_empty() {
        format!("{edited}\n")
    } else {
        format!("{head}\n{edited}\n")
    };
    let blob = repo.blob(edited.as_bytes()).unwrap();
    let (fan, name) = segments[0]
        .strip_prefix("history/")
        .unwrap()
        .split_once('/')
        .unwrap();
    let root = parent.tree().unwrap();
    let history = repo
        .find_tree(root.get_name("history").unwrap().id())
        .unwrap();
    let fan_tree = repo.find_tree(history.get_name(fan).unwrap().id()).unwrap();
    let mut b = repo.treebuilder(Some(&fan_tree)).unwrap();
    b.insert(name, blob, 0o100644).unwrap();
    let mut h = repo.treebuilder(Some(&history)).unwrap();
    h.insert(fan, b.write().unwrap(), 0o040000).unwrap();
    let mut r = repo.treebuilder(Some(&root)).unwrap();
    r.insert("history", h.write().unwrap(), 0o040000).unwrap();
    let tree = repo.find_tree(r.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    repo.commit(
        Some(&format!("refs/heads/{BRANCH}")),
        &sig,
        &sig,
        "edit history",
        &tree,
        &[&parent],
    )
    .unwrap();

    for clone in [&p, &clone_of(remote.path())] {
        let r = clone.run(&["history", "verify"]).expect(code::FAILED);
        assert!(
            r.stderr.contains("broken join between segments"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!(
                "the first line of `{}` does not chain to the last line of `{}`",
                segments[1], segments[0]
            )),
            "{}",
            r.stderr
        );
        // The cache is the branch's, edit included.
        assert_eq!(
            cache_file(clone, "history.jsonl"),
            remote_file(remote.path(), "history.jsonl")
        );
    }
}

/// The cache lives under the clone's git dir and grows by appends: after this clone's push and
/// after a fetch of another clone's records the file is appended to, never rewritten (same
/// inode); a force-pushed branch that no longer extends it is rebuilt from the tree.
#[test]
fn the_cache_under_the_git_dir_grows_by_appends_and_is_rebuilt_after_a_force_push() {
    use std::os::unix::fs::MetadataExt;
    let remote = bare_remote();
    let (a, b) = (clone_of(remote.path()), clone_of(remote.path()));
    publish(&a, "one");
    let path = cache_path(&a, "history.jsonl");
    let inode = || std::fs::metadata(&path).unwrap().ino();
    let first = inode();
    let after_one = tip(remote.path());

    publish(&a, "two");
    assert_eq!(inode(), first, "rewritten after a push");
    publish(&b, "three");
    a.run(&["history"]).expect(code::SUCCESS);
    assert_eq!(inode(), first, "rewritten after a fetch");
    assert_eq!(
        cache_file(&a, "history.jsonl"),
        remote_file(remote.path(), "history.jsonl")
    );
    assert_eq!(cache_file(&a, "history.jsonl").lines().count(), 3);

    // Someone force-pushes a branch that forks after the first record.
    git(
        remote.path(),
        &["update-ref", &format!("refs/heads/{BRANCH}"), &after_one],
    );
    publish(&b, "forked");
    a.run(&["history"]).expect(code::SUCCESS);
    let cached = cache_file(&a, "history.jsonl");
    assert_eq!(cached, remote_file(remote.path(), "history.jsonl"));
    assert!(
        cached.contains("forked") && !cached.contains("\"two\""),
        "{cached}"
    );
    a.run(&["history", "verify"]).expect(code::SUCCESS);

    // Nothing in the work tree.
    assert!(!a.state_dir().exists());
    assert_eq!(git(a.path(), &["status", "--porcelain"]), "");
}

/// A deploy that waited for another clone's deploy lock (its known tip is stale by then) follows
/// the other's deploy in one chain, and its cache and status hold both.
#[test]
fn a_deploy_that_waited_for_the_lock_follows_the_other_in_one_chain() {
    let remote = bare_remote();
    let (mut a, mut b) = (clone_of(remote.path()), clone_of(remote.path()));
    a.env("DEPLOY_SLEEP", "1");
    b.env("TEST_VERSION", "v3");
    let running = a
        .command(&["deploy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_held(remote.path());
    b.run(&["deploy", "--lock-wait", "60s"])
        .expect(code::SUCCESS);
    assert!(running.wait_with_output().unwrap().status.success());

    let history = remote_file(remote.path(), "history.jsonl");
    let finished: Vec<_> = records(&history)
        .into_iter()
        .filter(|r| r["kind"] == "deploy" && r["status"] == "success")
        .map(|r| r["version"].clone())
        .collect();
    assert_eq!(finished, ["v2", "v3"], "{history}");
    assert_eq!(cache_file(&b, "history.jsonl"), history);
    let s = b
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert!(!s.to_string().contains("\"v2\""), "{s}");
    b.run(&["history", "verify"]).expect(code::SUCCESS);
}
