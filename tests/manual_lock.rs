//! `shipgate lock acquire --message TEXT [--ttl DUR]`: a person holds the deploy lock (issue 14,
//! item 5). Deploys and rollbacks then exit 5 with the holder's message; `--lock-wait` does not
//! wait behind it; `lock release` frees it; both are audit records.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::{code, Project};
use crate::git_store::{bare_remote, clone_of, remote_file, remote_lock};

const MESSAGE: &str = "db migration 42 in progress, ask alice";

fn lock_json(p: &Project) -> serde_json::Value {
    p.run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json()
}

fn audit_titled<'a>(audit: &'a [serde_json::Value], title: &str) -> Vec<&'a serde_json::Value> {
    audit.iter().filter(|r| r["title"] == title).collect()
}

/// Polls `lock status` until the manual lock reads as expired.
fn wait_until_expired(p: &Project) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock_json(p)["manual"]["expired"] != true {
        assert!(Instant::now() < deadline, "the manual lock never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_manual_lock_refuses_deploys_and_rollbacks_with_its_message_and_changes_nothing() {
    let mut p = exec_project(THREE_STAGES);
    p.env("GITHUB_ACTOR", "alice");
    p.run(&["deploy"]).expect(code::SUCCESS);

    let r = p
        .run(&["lock", "acquire", "--message", MESSAGE])
        .expect(code::SUCCESS);
    assert!(r.stderr.contains("until released"), "{}", r.stderr);
    let v = lock_json(&p);
    assert_eq!(v["held"], true, "{v}");
    assert_eq!(v["manual"]["message"], MESSAGE, "{v}");
    assert_eq!(v["manual"]["actor"], "alice", "{v}");
    assert_eq!(v["manual"]["until"], serde_json::Value::Null, "{v}");
    assert_eq!(v["manual"]["expired"], false, "{v}");
    assert!(v["manual"]["since"].as_str().unwrap().ends_with('Z'), "{v}");
    let human = p.run(&["lock", "status"]).expect(code::SUCCESS).stdout;
    for part in ["manual lock", "alice", MESSAGE, "until released"] {
        assert!(human.contains(part), "{part} missing from {human}");
    }

    // Another person's deploy: exit 5 with message, actor, since and until; nothing changed.
    p.env("GITHUB_ACTOR", "bob").env("TEST_VERSION", "v3");
    let deploys_before = p.kind("deploy").len();
    let r = p.run(&["deploy"]).expect(code::LOCKED);
    for part in [MESSAGE, "alice", "since", "until released", "lock release"] {
        assert!(r.stderr.contains(part), "{part} missing from {}", r.stderr);
    }
    assert_eq!(
        p.kind("deploy").len(),
        deploys_before,
        "a refused deploy recorded"
    );
    assert_eq!(p.live("lhr"), "v2");
    assert!(
        !p.calls().iter().any(|c| c.contains("v3")),
        "{:?}",
        p.calls()
    );

    // `--lock-wait` does not wait behind a person: it says so and exits 5 at once.
    let r = p.run(&["deploy", "--lock-wait", "5s"]).expect(code::LOCKED);
    assert!(
        r.stderr.contains("does not wait behind a manual lock"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("waiting for the deploy lock"),
        "{}",
        r.stderr
    );

    // A rollback is refused too (hands off means hands off); the way out is `lock release`.
    let r = p.run(&["rollback", "--yes"]).expect(code::LOCKED);
    assert!(r.stderr.contains(MESSAGE), "{}", r.stderr);
    assert_eq!(p.live("lhr"), "v2");

    // A second manual lock is refused, naming the first.
    let r = p
        .run(&["lock", "acquire", "--message", "mine now"])
        .expect(code::LOCKED);
    assert!(r.stderr.contains(MESSAGE), "{}", r.stderr);
    assert!(r.stderr.contains("alice"), "{}", r.stderr);
    assert_eq!(lock_json(&p)["manual"]["message"], MESSAGE);

    // Released by someone else: allowed, said loudly, recorded.
    let r = p.run(&["lock", "release"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("alice"), "{}", r.stderr);
    let v = lock_json(&p);
    assert_eq!(v["held"], false, "{v}");
    assert_eq!(v["manual"], serde_json::Value::Null, "{v}");
    p.run(&["lock", "release"]).expect(code::SUCCESS);

    let audit = p.audit();
    let acquired = audit_titled(&audit, "manual lock acquired");
    assert_eq!(acquired.len(), 1, "{audit:?}");
    assert_eq!(acquired[0]["context"]["manual"]["message"], MESSAGE);
    assert_eq!(acquired[0]["context"]["manual"]["actor"], "alice");
    let released = audit_titled(&audit, "manual lock released");
    assert_eq!(released.len(), 1, "{audit:?}");
    assert_eq!(released[0]["context"]["manual"]["actor"], "alice");
    assert_eq!(released[0]["context"]["released_by"]["actor"], "bob");
    p.run(&["history", "verify"]).expect(code::SUCCESS);

    p.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v3");
}

#[test]
fn a_manual_lock_with_a_ttl_is_ignored_once_expired_and_cleared_by_the_next_acquire() {
    let mut p = exec_project(THREE_STAGES);
    p.env("GITHUB_ACTOR", "alice");
    p.run(&["lock", "acquire", "--message", "short one", "--ttl", "3s"])
        .expect(code::SUCCESS);
    let v = lock_json(&p);
    assert_eq!(v["held"], true, "{v}");
    assert_eq!(v["manual"]["expired"], false, "{v}");
    assert!(v["manual"]["until"].as_str().unwrap().ends_with('Z'), "{v}");
    wait_until_expired(&p);
    let v = lock_json(&p);
    assert_eq!(v["held"], false, "{v}");
    let human = p.run(&["lock", "status"]).expect(code::SUCCESS).stdout;
    assert!(human.contains("expired"), "{human}");

    // The next acquire clears it, with a note and an audit record.
    let r = p
        .run(&["lock", "acquire", "--message", MESSAGE, "--ttl", "1h"])
        .expect(code::SUCCESS);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert!(r.stderr.contains("short one"), "{}", r.stderr);
    assert_eq!(lock_json(&p)["manual"]["message"], MESSAGE);
    p.run(&["deploy"]).expect(code::LOCKED);
    let r = p.run(&["lock", "release"]).expect(code::SUCCESS);
    assert!(!r.stderr.contains("expired"), "{}", r.stderr);

    // An expired lock is ignored by a deploy, which clears it (with a note).
    p.run(&["lock", "acquire", "--message", "again", "--ttl", "1s"])
        .expect(code::SUCCESS);
    wait_until_expired(&p);
    let r = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert_eq!(p.live("fra"), "v2");
    assert_eq!(lock_json(&p)["manual"], serde_json::Value::Null);

    let audit = p.audit();
    assert_eq!(audit_titled(&audit, "manual lock acquired").len(), 3);
    assert_eq!(audit_titled(&audit, "manual lock expired").len(), 2);
    assert_eq!(audit_titled(&audit, "manual lock released").len(), 1);
}

#[test]
fn a_manual_lock_is_refused_while_a_deploy_runs() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "2");
    let running = p
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock_json(&p)["holder"]["command"] != "deploy" {
        assert!(Instant::now() < deadline, "never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = p
        .run(&["lock", "acquire", "--message", MESSAGE])
        .expect(code::LOCKED);
    assert!(
        r.stderr.contains(&format!("pid {}", running.id())),
        "{}",
        r.stderr
    );
    assert!(running.wait_with_output().unwrap().status.success());
    assert_eq!(lock_json(&p)["manual"], serde_json::Value::Null);
    assert!(audit_titled(&p.audit(), "manual lock acquired").is_empty());
}

#[test]
fn bad_manual_lock_input_is_refused_and_changes_nothing() {
    let p = exec_project(THREE_STAGES);
    for args in [
        &["lock", "acquire", "--message", ""][..],
        &["lock", "acquire", "--message", "   "],
        &["lock", "acquire", "--message", "x", "--ttl", "0s"],
        &["lock", "acquire", "--message", "x", "--ttl", "soon"],
        &["lock", "acquire"],
    ] {
        let r = p.run(args).expect(code::USAGE);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
    }
    let long = "x".repeat(2000);
    p.run(&["lock", "acquire", "--message", &long])
        .expect(code::USAGE);
    let v = lock_json(&p);
    assert_eq!(v["held"], false, "{v}");
    assert_eq!(v["manual"], serde_json::Value::Null, "{v}");
    assert!(p.audit().is_empty());
}

#[test]
fn a_manual_lock_message_never_reaches_the_terminal_raw() {
    let p = exec_project(THREE_STAGES);
    let evil = "migration \x1b]0;pwned\x07\x1b[2J done\nsecond line";
    p.run(&["lock", "acquire", "--message", evil])
        .expect(code::SUCCESS);
    let s = p.run(&["lock", "status"]).expect(code::SUCCESS);
    let d = p.run(&["deploy"]).expect(code::LOCKED);
    let r = p.run(&["lock", "release"]).expect(code::SUCCESS);
    for out in [&s.stdout, &s.stderr, &d.stdout, &d.stderr, &r.stderr] {
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    }
    assert!(s.stdout.contains("\\x1b]0;pwned"), "{}", s.stdout);
    assert!(d.stderr.contains("\\x1b"), "{}", d.stderr);
    // The record keeps the text as given.
    let audit = p.audit();
    assert_eq!(
        audit_titled(&audit, "manual lock acquired")[0]["context"]["manual"]["message"],
        evil
    );
}

#[test]
fn with_the_git_store_a_manual_lock_holds_the_lease_ref_for_every_clone() {
    let remote = bare_remote();
    let (mut a, mut b) = (clone_of(remote.path()), clone_of(remote.path()));
    a.env("GITHUB_ACTOR", "alice");
    b.env("GITHUB_ACTOR", "bob");
    a.run(&["lock", "acquire", "--message", MESSAGE])
        .expect(code::SUCCESS);
    let lease = remote_lock(remote.path()).unwrap();
    assert_eq!(lease["state"], "held", "{lease}");
    assert_eq!(lease["manual"]["message"], MESSAGE, "{lease}");

    // Another clone: refused at once, with the message, also with --lock-wait.
    let r = b.run(&["deploy"]).expect(code::LOCKED);
    assert!(r.stderr.contains(MESSAGE), "{}", r.stderr);
    assert!(r.stderr.contains("alice"), "{}", r.stderr);
    let r = b.run(&["deploy", "--lock-wait", "5s"]).expect(code::LOCKED);
    assert!(
        r.stderr.contains("does not wait behind a manual lock"),
        "{}",
        r.stderr
    );
    b.run(&["lock", "acquire", "--message", "mine"])
        .expect(code::LOCKED);
    assert_eq!(b.live("lhr"), "v1");
    let v = lock_json(&b);
    assert_eq!(v["held"], true, "{v}");
    assert_eq!(v["manual"]["actor"], "alice", "{v}");
    assert_eq!(v["holder"], serde_json::Value::Null, "{v}");

    // Released from the other clone; then deploys run.
    b.run(&["lock", "release"]).expect(code::SUCCESS);
    assert_eq!(remote_lock(remote.path()).unwrap()["state"], "released");
    b.run(&["deploy"]).expect(code::SUCCESS);

    // A ttl ends the lease; the next deploy takes it over.
    a.run(&["lock", "acquire", "--message", "brief", "--ttl", "1s"])
        .expect(code::SUCCESS);
    wait_until_expired(&b);
    b.env("TEST_VERSION", "v3");
    let r = b.run(&["deploy"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    assert_eq!(b.live("lhr"), "v3");

    let audit = remote_file(remote.path(), "audit.jsonl");
    for title in [
        "manual lock acquired",
        "manual lock released",
        "manual lock expired",
    ] {
        assert!(audit.contains(title), "{title} missing from {audit}");
    }
}
