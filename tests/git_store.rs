//! The git store (SPEC §4): the ledger on a branch of a local bare "origin", the lock a ref.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::{code, Project};

const BRANCH: &str = "shipgate/ledger";

/// Runs git in `dir` with a fixed identity; panics on failure; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git")
}

/// A bare repository standing in for the shared remote.
fn bare_remote() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "--bare", "-b", "main"]);
    dir
}

/// A clone of the project: the scratch exec pipeline with the git store, committed in its own
/// repository whose `origin` is `remote`.
fn clone_of(remote: &Path) -> Project {
    let p = exec_project(&format!(
        "{THREE_STAGES}\n[state]\nstore = \"git\"\nremote = \"origin\"\n"
    ));
    p.write(".gitignore", ".shipgate/\nstate/\n");
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "-A"]);
    git(p.path(), &["commit", "-q", "-m", "init"]);
    git(
        p.path(),
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    p
}

/// A file on the remote's ledger branch.
fn remote_file(remote: &Path, file: &str) -> String {
    git(remote, &["show", &format!("{BRANCH}:{file}")])
}

fn remote_lock(remote: &Path) -> Option<serde_json::Value> {
    let out = git_output(remote, &["show", "refs/shipgate/lock:lock.json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn records(text: &str) -> Vec<serde_json::Value> {
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
        ["audit.jsonl", "history.jsonl", "status.json"]
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

    // The cache matches the branch, and the chain verifies.
    assert_eq!(
        p.read(".shipgate/history.jsonl"),
        remote_file(remote.path(), "history.jsonl")
    );
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
        assert_eq!(p.read(".shipgate/history.jsonl"), text);
    }
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

#[test]
fn an_expired_lease_is_taken_over_and_a_live_one_only_force_released() {
    let remote = bare_remote();
    let (mut a, mut b) = (clone_of(remote.path()), clone_of(remote.path()));
    // A holder that dies without releasing: its lease runs out, nobody renews it.
    a.env("DEPLOY_SLEEP", "30")
        .env("SHIPGATE_GIT_LEASE_SECS", "2");
    let mut crashed = a
        .command(&["deploy"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = wait_until_held(remote.path());
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    b.run(&["deploy"]).expect(code::LOCKED);
    let expires = chrono::DateTime::parse_from_rfc3339(lock["expires_at"].as_str().unwrap())
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
    assert_eq!(s["stale"]["deploy_id"], lock["holder"]["deploy_id"]);
    b.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");

    // A live holder (long lease) is refused to `release` and freed by `release --force`.
    b.env("SHIPGATE_GIT_LEASE_SECS", "600")
        .env("TEST_VERSION", "v3");
    let mut stuck = b
        .command(&["deploy"])
        .env("DEPLOY_SLEEP", "30")
        .spawn()
        .unwrap();
    wait_until_held(remote.path());
    stuck.kill().unwrap();
    stuck.wait().unwrap();
    a.run(&["deploy"]).expect(code::LOCKED);
    a.run(&["lock", "release"]).expect(code::LOCKED);
    let r = a.run(&["lock", "release", "--force"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("FORCE-RELEASED"), "{}", r.stderr);
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");
    a.env("SHIPGATE_GIT_LEASE_SECS", "600")
        .env("DEPLOY_SLEEP", "0");
    a.run(&["deploy"]).expect(code::SUCCESS);
    a.run(&["history", "verify"]).expect(code::SUCCESS);
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
