//! `shipgate rollback` by hand: default target from history, `--to`, `--region`, `--stage`,
//! verification, records.

use crate::common::code;
use crate::common::pipeline::{exec_project, THREE_STAGES};

/// A project where v2 and then v3 were deployed everywhere.
fn deployed_twice() -> crate::common::Project {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(p.live("ewr"), "v3");
    p
}

#[test]
fn default_target_is_the_previous_successful_version() {
    let p = deployed_twice();
    let run = p
        .run(&["rollback", "--reason", "pager went off"])
        .expect(code::SUCCESS);
    for r in ["lhr", "nrt", "ewr", "ord", "fra"] {
        assert_eq!(p.live(r), "v2", "{r}: {}", run.stderr);
    }
    let rb = p.kind("rollback").pop().unwrap();
    assert_eq!(rb["automatic"], false);
    assert_eq!(rb["reason"], "pager went off");
    assert_eq!(rb["from_version"]["lhr"], "v3");
    assert_eq!(rb["to_version"]["lhr"], "v2");
    assert_eq!(rb["status"], "success");
    assert!(
        p.calls().iter().any(|c| c == "rollback lhr v2 prev=v3"),
        "{:?}",
        p.calls()
    );
    assert!(
        p.audit().iter().any(|a| a["priority"] == "P1"
            && a["title"]
                .as_str()
                .unwrap_or("")
                .contains("manual rollback")),
        "{:?}",
        p.audit()
    );
    // Gates ran after the rollback.
    assert!(p
        .kind("gate")
        .iter()
        .any(|g| g["deploy_id"] == rb["deploy_id"] && g["result"] == "pass"));
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["lhr"]["version"], "v2");
    assert_eq!(status["regions"]["lhr"]["status"], "rolled_back");
}

#[test]
fn to_a_named_version_of_history() {
    let p = deployed_twice();
    p.run(&["rollback", "--to", "v2", "--region", "lhr", "--yes"])
        .expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(p.live("nrt"), "v3", "--region limits the rollback");
}

#[test]
fn to_an_unknown_version_is_refused() {
    let p = deployed_twice();
    let run = p.run(&["rollback", "--to", "v9"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("no successful deploy of `v9` in history"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(p.live("lhr"), "v3");
    // --force allows it.
    p.run(&[
        "rollback",
        "--to",
        "v9",
        "--force",
        "--stage",
        "canary",
        "--no-verify",
    ])
    .expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v9");
    assert_eq!(p.live("ewr"), "v3");
}

#[test]
fn bad_region_is_a_usage_error_with_a_hint() {
    let p = deployed_twice();
    let run = p.run(&["rollback", "--region", "lrh"]).expect(code::USAGE);
    assert!(run.stderr.contains("did you mean `lhr`?"), "{}", run.stderr);
}

#[test]
fn no_earlier_version_known_changes_nothing() {
    let p = exec_project(THREE_STAGES);
    let run = p.run(&["rollback", "--region", "lhr"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("no earlier version known"),
        "{}",
        run.stderr
    );
    assert!(p.calls().is_empty());
}

#[test]
fn failed_rollback_command_exits_3() {
    let mut p = deployed_twice();
    p.env("FAIL_ROLLBACK", "nrt");
    let run = p
        .run(&["rollback", "--stage", "canary"])
        .expect(code::ROLLBACK_FAILED);
    assert!(run.stderr.contains("nrt"), "{}", run.stderr);
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(p.kind("rollback").pop().unwrap()["status"], "failed");
}

#[test]
fn failed_verification_exits_3() {
    let mut p = deployed_twice();
    p.env("FAIL_GATE", "lhr");
    let run = p
        .run(&["rollback", "--region", "lhr"])
        .expect(code::ROLLBACK_FAILED);
    assert!(run.stderr.contains("verification failed"), "{}", run.stderr);
    // --no-verify skips the gates.
    p.run(&["rollback", "--region", "nrt", "--no-verify"])
        .expect(code::SUCCESS);
}

#[test]
fn rollback_after_a_rolled_back_deploy_never_returns_to_the_bad_version() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS); // v2 everywhere
    p.env("TEST_VERSION", "v3")
        .env("FAIL_GATE", "ewr")
        .env("BAD_VERSION", "v3");
    p.run(&["deploy"]).expect(code::FAILED); // canary passed on v3, primary failed: back to v2
    assert_eq!(p.live("lhr"), "v2");
    // The canary's v3 passed its gates, but its deploy was rolled back: not a rollback target.
    // The version before v2 is v1, from the first deploy's record.
    p.run(&["rollback", "--region", "lhr", "--yes"])
        .expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v1");
    assert!(
        !p.calls().iter().any(|c| c.starts_with("rollback lhr v3")),
        "{:?}",
        p.calls()
    );
    // Nor is it a valid --to without --force.
    let run = p
        .run(&["rollback", "--to", "v3", "--region", "lhr"])
        .expect(code::USAGE);
    assert!(
        run.stderr.contains("no successful deploy of `v3`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_manual_rollback_is_not_undone_by_the_next_one() {
    let p = deployed_twice(); // v2 then v3
    p.run(&["rollback", "--region", "lhr"])
        .expect(code::SUCCESS); // v3 → v2
                                // The next plain rollback must not offer v3 (the version just rolled back from).
    let run = p.run(&["rollback", "--region", "lhr"]);
    assert!(
        !p.calls().iter().any(|c| c == "rollback lhr v3 prev=v2"),
        "{}\n{:?}",
        run.stderr,
        p.calls()
    );
}

/// `rollback --dry-run` shows the plan and the exact commands, and changes nothing: no command
/// runs, no record is written, and it does not even need the lock.
#[test]
fn dry_run_shows_the_plan_and_commands_and_changes_nothing() {
    let p = deployed_twice();
    let history = p.read(".shipgate/history.jsonl");
    let audit = p.read(".shipgate/audit.jsonl");
    let calls = p.calls().len();
    let r = p
        .run(&["rollback", "--dry-run", "--stage", "canary"])
        .expect(code::SUCCESS);
    assert!(r.stdout.contains("rollback plan:"), "{}", r.stdout);
    assert!(r.stdout.contains("lhr      v3 → v2"), "{}", r.stdout);
    assert!(r.stdout.contains("./rollback.sh lhr v2"), "{}", r.stdout);
    assert!(r.stdout.contains("./rollback.sh nrt v2"), "{}", r.stdout);
    assert!(!r.stdout.contains("ewr"), "{}", r.stdout);
    assert!(
        r.stdout.contains("then verified by the gates: health"),
        "{}",
        r.stdout
    );
    let v = p
        .run(&[
            "--format",
            "json",
            "rollback",
            "--dry-run",
            "--region",
            "ewr",
        ])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["targets"][0]["from"], "v3");
    assert_eq!(v["targets"][0]["to"], "v2");
    assert_eq!(
        v["commands"],
        serde_json::json!([["./rollback.sh", "ewr", "v2"]])
    );
    // Nothing ran (only the reads of what runs), nothing was recorded.
    assert!(
        p.calls()[calls..].iter().all(|c| c.starts_with("current ")),
        "{:?}",
        &p.calls()[calls..]
    );
    assert_eq!(p.live("lhr"), "v3");
    assert_eq!(p.read(".shipgate/history.jsonl"), history);
    assert_eq!(p.read(".shipgate/audit.jsonl"), audit);
    // It does not create a state directory a typo named, either.
    p.run(&[
        "--state-dir",
        "no/such/dir",
        "rollback",
        "--dry-run",
        "--to",
        "v2",
        "--force",
    ])
    .expect(code::SUCCESS);
    assert!(!p.path().join("no").exists());
}

#[test]
fn dry_run_works_while_a_deploy_holds_the_lock() {
    let mut p = deployed_twice();
    p.env("TEST_VERSION", "v4").env("DEPLOY_SLEEP", "4");
    let mut holder = p
        .command(&["deploy", "--stage", "canary"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.run(&["lock", "status"]).stdout.contains("not held") {
        assert!(std::time::Instant::now() < deadline, "never locked");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    p.run(&["rollback", "--yes"]).expect(code::LOCKED);
    let r = p
        .run(&["rollback", "--dry-run", "--region", "ewr"])
        .expect(code::SUCCESS);
    assert!(r.stdout.contains("./rollback.sh ewr v2"), "{}", r.stdout);
    assert!(holder.wait().unwrap().success());
}
