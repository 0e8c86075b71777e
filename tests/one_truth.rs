//! One truth of what runs where (issue "One truth"): one outcome model, one rollback,
//! `status.json` as the fold of history, and `shipgate recover`. Each test is named after a
//! defect reproduced against the release binary before this change.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::code;
use crate::common::pipeline::{exec_project, REGIONS, THREE_STAGES};
use crate::common::process::{signal, wait_until, SIGINT, SIGKILL, SIGTERM};
use crate::common::Project;

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn status_json(p: &Project) -> Value {
    p.run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json()
}

fn region<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("no region {name} in {v}"))
}

/// Was: after a `full` stage failed under `on_failure = "continue"`, `status.json` said the
/// failed region ran the new version, and the same history rebuilt said version `""` with no
/// deploy id or actor.
#[test]
fn status_json_after_a_failed_continue_stage_equals_the_state_rebuilt_from_history() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "ord");
    p.run(&["deploy"]).expect(code::PARTIAL);
    let (written, folded) = p.written_and_folded_status().unwrap();
    assert_eq!(written, folded);
    let ord = &written["regions"]["ord"];
    assert_eq!(ord["version"], "v2", "ord runs v2, failing: {written}");
    assert_eq!(ord["status"], "failed");
    assert!(!ord["deploy_id"].as_str().unwrap().is_empty(), "{ord}");
    assert!(!ord["actor"].as_str().unwrap().is_empty(), "{ord}");
    // And `status` rebuilding it from history says the same.
    let shown = status_json(&p);
    std::fs::remove_file(p.state_dir().join("status.json")).unwrap();
    let rebuilt = status_json(&p);
    assert_eq!(rebuilt["regions"], shown["regions"]);
}

/// Was: an empty answer from the platform (an exec `current` printing nothing, exit 0) made a
/// region look empty although history said what ran there: the deploy went ahead with no
/// rollback target, and a tripped gate ended in exit 3.
#[test]
fn an_empty_platform_answer_falls_back_to_history_for_the_rollback_target() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("BAD_VERSION", "v3")
        .env("FAIL_GATE", "lhr")
        .env("EMPTY_CURRENT", "1");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr.contains(
            "lhr: the platform reports nothing deployed, but history says it runs v2: rollback target v2"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(p.live("nrt"), "v2");
    assert_eq!(p.kind("deploy").pop().unwrap()["status"], "rolled_back");
}

/// A region with no version known anywhere is deployed only after saying so, and the dry run
/// says so too.
#[test]
fn a_region_with_no_version_known_anywhere_is_named_before_the_deploy_and_in_the_dry_run() {
    let mut p = exec_project(THREE_STAGES);
    p.env("EMPTY_CURRENT", "1");
    let dry = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        dry.stderr.contains(
            "lhr: the platform reports nothing deployed and history knows no version there"
        ),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stdout.contains("rollback targets: lhr → none known"),
        "{}",
        dry.stdout
    );
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(
        run.stderr
            .contains("it is deployed without a rollback target"),
        "{}",
        run.stderr
    );
}

/// GitHub Actions cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s
/// after that. Was: the in-process rollback was abandoned at the SIGTERM and the `cancelled`
/// record was written only after the 5 s kill grace, so the SIGKILL landed first and lost it;
/// regions were left mixed and nothing finished the job.
#[test]
fn githubs_cancel_ladder_leaves_a_cancelled_record_and_recover_finishes_the_job() {
    let mut p = exec_project(THREE_STAGES);
    // Each platform command takes 9 s: deploys change the region first, then wait.
    p.env("SETTLE_SLEEP", "9")
        .env("ROLLBACK_SLEEP", "9")
        .env("GITHUB_ACTIONS", "true");
    let child = spawn(&p, &["deploy"]);
    wait_until("the canary runs v2", || {
        p.live("lhr") == "v2" && p.live("nrt") == "v2"
    });
    let pid = child.id();
    signal(pid, SIGINT);
    wait_until("the rollback starts", || {
        p.calls()
            .iter()
            .filter(|c| c.starts_with("rollback"))
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_millis(7500));
    signal(pid, SIGTERM);
    std::thread::sleep(Duration::from_millis(2500));
    signal(pid, SIGKILL);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exited by itself (130: the first signal was SIGINT), before the SIGKILL.
    assert_eq!(out.status.code(), Some(code::SIGINT), "{stderr}");
    assert!(
        stderr.contains("`shipgate recover --latest --yes` finishes the job"),
        "{stderr}"
    );
    let deploys = p.kind("deploy");
    let cancelling = deploys
        .iter()
        .find(|d| d["status"] == "cancelling")
        .unwrap();
    for r in ["lhr", "nrt"] {
        assert_eq!(cancelling["regions_detail"][r]["position"], "changed");
        assert_eq!(cancelling["regions_detail"][r]["target"], "v1");
    }
    let cancelled = deploys.last().unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{deploys:?}");
    for r in ["lhr", "nrt"] {
        assert_eq!(
            cancelled["regions_detail"][r]["position"], "unknown",
            "{cancelled}"
        );
        assert_eq!(cancelled["regions_detail"][r]["target"], "v1");
    }
    // Both regions need a human (or `recover`) until they are back.
    let before = status_json(&p);
    let attention = before["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 2, "{before}");
    assert!(
        attention[0].as_str().unwrap().starts_with("lhr: "),
        "{before}"
    );
    p.run(&["status", "--check"]).expect(code::CHECK_FAILED);

    let mut p = p;
    p.env("ROLLBACK_SLEEP", "0").env("SETTLE_SLEEP", "0");
    let run = p
        .run(&["recover", "--latest", "--yes"])
        .expect(code::SUCCESS);
    for r in REGIONS {
        assert_eq!(p.live(r), "v1", "{r}\n{}", run.stderr);
    }
    let rb = p.kind("rollback").pop().unwrap();
    assert_eq!(rb["recover"], true);
    p.run(&["status", "--check"]).expect(code::SUCCESS);
    // A second recover finds nothing left to do.
    let again = p
        .run(&["recover", "--latest", "--yes"])
        .expect(code::SUCCESS);
    assert!(
        again.stderr.contains("nothing to recover"),
        "{}",
        again.stderr
    );
    let after = status_json(&p);
    assert_eq!(after["attention"], serde_json::json!([]), "{after}");
}

/// Was: after SIGKILL of shipgate mid-deploy, the platform command it started finished and the
/// region ran the new version, while `status` showed the old one as `success` and the
/// interrupted deploy listed no regions.
#[test]
fn a_deploy_killed_with_sigkill_names_every_region_whose_deploy_had_started() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "1");
    let child = spawn(&p, &["deploy"]);
    wait_until("both canary deploys start", || {
        p.calls().iter().filter(|c| c.starts_with("deploy")).count() == 2
    });
    signal(child.id(), SIGKILL);
    let _ = child.wait_with_output();
    // The platform commands shipgate started run on and finish.
    wait_until("the canary runs v2", || {
        p.live("lhr") == "v2" && p.live("nrt") == "v2"
    });
    let v = status_json(&p);
    assert_eq!(v["interrupted"].as_array().unwrap().len(), 1, "{v}");
    for r in ["lhr", "nrt"] {
        assert_eq!(region(&v, r)["may_run"], "v2", "{v}");
    }
    assert_eq!(region(&v, "ewr")["may_run"], Value::Null);
    let attention = v["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 2, "{v}");
    assert!(attention[0].as_str().unwrap().contains("may run v2"), "{v}");
    let check = p.run(&["status", "--check"]).expect(code::CHECK_FAILED);
    assert!(check.stdout.contains("lhr: "), "{}", check.stdout);
    let live = p.run(&["status", "--live", "--format", "json"]).json();
    assert_eq!(region(&live, "lhr")["live"]["value"], "v2", "{live}");

    p.run(&["recover", "--yes"]).expect(code::SUCCESS);
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v1".into(), "v1".into()));
    let v = status_json(&p);
    assert_eq!(v["interrupted"], serde_json::json!([]), "{v}");
    assert_eq!(v["attention"], serde_json::json!([]), "{v}");
    p.run(&["status", "--check"]).expect(code::SUCCESS);
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "rolled_back", "{last}");
}

/// Was: a region listed under "needs a human" could not be cleared: `rollback --to V --region
/// R` on a region that already ran V said "nothing to roll back", exited 0, and the region
/// stayed listed; `status --check` then exited 6 on every cron run for ever.
#[test]
fn rollback_to_the_version_a_region_needing_a_human_runs_verifies_and_clears_it() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("BAD_VERSION", "v3")
        .env("FAIL_GATE", "lhr")
        .env("FAIL_ROLLBACK", "lhr");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    assert_eq!(status_json(&p)["attention"].as_array().unwrap().len(), 1);
    // A human puts lhr back by hand.
    p.write("state/lhr", "v2\n");
    let mut p = p;
    p.env("FAIL_ROLLBACK", "");
    let run = p
        .run(&["rollback", "--to", "v2", "--region", "lhr", "--yes"])
        .expect(code::SUCCESS);
    assert!(
        run.stderr.contains("already runs v2: verify and record"),
        "{}",
        run.stderr
    );
    let rb = p.kind("rollback").pop().unwrap();
    assert_eq!(rb["regions_detail"]["lhr"]["status"], "resolved", "{rb}");
    let v = status_json(&p);
    assert_eq!(v["attention"], serde_json::json!([]), "{v}");
    assert_eq!(region(&v, "lhr")["version"], "v2");
    p.run(&["status", "--check"]).expect(code::SUCCESS);
}

/// Was: plain `rollback` after a failed rollback refused the whole plan because regions the
/// deploy never touched had no earlier version.
#[test]
fn plain_rollback_skips_regions_with_nothing_to_do_instead_of_refusing_the_plan() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "lhr").env("FAIL_ROLLBACK", "lhr,nrt");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let mut p = p;
    p.env("FAIL_ROLLBACK", "");
    let run = p.run(&["rollback", "--yes"]).expect(code::SUCCESS);
    assert!(
        run.stderr.contains("skipped ewr: no earlier version known"),
        "{}",
        run.stderr
    );
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v1".into(), "v1".into()));
    assert_eq!(status_json(&p)["attention"], serde_json::json!([]));
}

/// Was: a first signal arriving between two reads of the signal counter could panic a deploy
/// that had already run every stage (`.expect` on the second read). The verdict now reads the
/// signal state once; signals sent as the deploy finishes never end in a panic.
#[test]
fn a_signal_as_the_deploy_finishes_never_panics() {
    for _ in 0..4 {
        let p = exec_project(THREE_STAGES);
        let child = spawn(&p, &["deploy"]);
        wait_until("the last stage's outcome", || {
            p.kind("stage")
                .iter()
                .any(|s| s["stage"] == "full" && s["status"] == "success")
        });
        signal(child.id(), SIGINT);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(130)),
            "{:?}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Whatever it decided, history and status.json agree (checked when `p` drops).
    }
}

/// `recover` on a history whose latest deploy ended well changes nothing, and names it.
#[test]
fn recover_with_nothing_to_recover_says_so() {
    let p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    let run = p
        .run(&["recover", "--latest", "--yes"])
        .expect(code::SUCCESS);
    assert!(run.stderr.contains("nothing to recover"), "{}", run.stderr);
    let run = p.run(&["recover", "01NOPE", "--yes"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("no deploy `01NOPE` in history"),
        "{}",
        run.stderr
    );
}

/// `recover --dry-run` shows the plan and the exact commands, and changes nothing.
#[test]
fn recover_dry_run_prints_the_commands_and_changes_nothing() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "lhr").env("FAIL_ROLLBACK", "lhr");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let history = p.read(".shipgate/history.jsonl");
    let run = p.run(&["recover", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("./rollback.sh lhr v1"),
        "{}",
        run.stdout
    );
    assert_eq!(p.read(".shipgate/history.jsonl"), history);
    assert_eq!(p.live("lhr"), "v2");
}
