//! Policy without a server: deploy windows and freezes in their own time zones, stop-the-line,
//! the audited override, and the way back that policy never blocks. The clock is
//! `SHIPGATE_NOW` (it runs on in real time from there).

use crate::common::pipeline::*;
use crate::common::process::wait_until;
use crate::common::{code, Project, Run};

/// Canary deploys any time; primary and full only Mon–Thu 09:00–16:00 London time.
fn windowed() -> String {
    format!(
        "{THREE_STAGES}\n[[window]]\nname = \"eu-business\"\ndays = [\"Mon\", \"Tue\", \"Wed\", \"Thu\"]\nstart = \"09:00\"\nend = \"16:00\"\ntz = \"Europe/London\"\nstages = [\"primary\", \"full\"]\n"
    )
}

fn at(p: &Project, now: &str, args: &[&str]) -> Run {
    p.command(args)
        .env("SHIPGATE_NOW", now)
        .env("GITHUB_ACTOR", "alice")
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_closed_window_is_exit_7_naming_it_and_its_opening_in_its_zone_and_utc_across_dst() {
    let p = exec_project(&windowed());
    // Thursday 08:59 in London (BST, UTC+1).
    let run = at(&p, "2026-10-22T07:59:00Z", &["deploy"]).expect(code::BLOCKED);
    assert!(run.stderr.contains("blocked by policy"), "{}", run.stderr);
    assert!(
        run.stderr.contains("window `eu-business`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Thu 2026-10-22 09:00 BST (2026-10-22 08:00 UTC)"),
        "{}",
        run.stderr
    );
    assert!(p.history().is_empty(), "nothing was recorded");
    assert_eq!(p.live("lhr"), "v1", "nothing was changed");
    // The clocks went back on Sunday: Monday 08:30 UTC is 08:30 in London, still closed.
    let run = at(&p, "2026-10-26T08:30:00Z", &["deploy"]).expect(code::BLOCKED);
    assert!(
        run.stderr
            .contains("Mon 2026-10-26 09:00 GMT (2026-10-26 09:00 UTC)"),
        "{}",
        run.stderr
    );
    at(&p, "2026-10-26T09:00:30Z", &["deploy"]).expect(code::SUCCESS);
    let started = &p.kind("deploy")[0];
    assert_eq!(
        started["simulated_now"], "2026-10-26T09:00:30Z",
        "{started}"
    );
}

#[test]
fn a_configured_freeze_blocks_with_its_reason() {
    let p = exec_project(&format!(
        "{THREE_STAGES}\n[[freeze]]\nname = \"holidays\"\nfrom = \"2026-12-22T00:00:00-05:00\"\nto = \"2027-01-05T00:00:00-05:00\"\nreason = \"holiday freeze\"\nstages = [\"primary\", \"full\"]\n"
    ));
    let run = at(&p, "2026-12-24T12:00:00Z", &["deploy"]).expect(code::BLOCKED);
    assert!(
        run.stderr
            .contains("freeze `holidays` (holiday freeze) until 2027-01-05T05:00:00Z"),
        "{}",
        run.stderr
    );
    // Under Actions: a notice, not an error of shipgate's.
    let run: Run = p
        .command(&["deploy"])
        .env("SHIPGATE_NOW", "2026-12-24T12:00:00Z")
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap()
        .into();
    let run = run.expect(code::BLOCKED);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("::notice title=shipgate%3A blocked by policy::")),
        "{}",
        run.stderr
    );
    at(&p, "2027-01-05T05:00:00Z", &["deploy"]).expect(code::SUCCESS);
}

#[test]
fn a_window_closing_mid_deploy_stops_it_blocked_and_the_next_deploy_resumes() {
    let mut p = exec_project(&windowed());
    p.env("DEPLOY_SLEEP", "3");
    // Monday 15:59:58 London: primary is open at the start, closed when its turn comes.
    let run = at(&p, "2026-10-26T15:59:58Z", &["deploy"]).expect(code::BLOCKED);
    assert!(
        run.stderr.contains("stopped before stage primary"),
        "{}",
        run.stderr
    );
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v2".into(), "v2".into()));
    assert_eq!((p.live("ewr"), p.live("ord")), ("v1".into(), "v1".into()));
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "blocked", "{last}");
    assert!(p.kind("rollback").is_empty(), "a block is not a failure");
    let status = p.run(&["status", "--format", "json"]).json();
    assert_eq!(status["last_deploy"]["status"], "blocked");

    // Tuesday morning: the same version resumes at primary.
    let before = p.calls().len();
    let mut p2 = p;
    p2.env("DEPLOY_SLEEP", "0");
    let run = at(&p2, "2026-10-27T09:30:00Z", &["deploy"]).expect(code::SUCCESS);
    assert!(
        run.stderr.contains("stage canary already runs v2 healthy"),
        "{}",
        run.stderr
    );
    let new_calls: Vec<String> = p2.calls()[before..].to_vec();
    assert!(
        !new_calls
            .iter()
            .any(|c| c.starts_with("deploy lhr") || c.starts_with("deploy nrt")),
        "{new_calls:?}"
    );
    assert_eq!(p2.live("ewr"), "v2");
    assert_eq!(p2.live("fra"), "v2");
}

#[test]
fn wait_for_window_waits_for_the_opening_within_its_bound() {
    let p = exec_project(&windowed());
    let run = at(
        &p,
        "2026-10-26T08:59:59Z",
        &["deploy", "--wait-for-window", "1s"],
    )
    .expect(code::BLOCKED);
    assert!(
        run.stderr.contains("--wait-for-window 1s is too short"),
        "{}",
        run.stderr
    );
    let run = at(
        &p,
        "2026-10-26T08:59:58Z",
        &["deploy", "--wait-for-window", "1m"],
    )
    .expect(code::SUCCESS);
    assert!(
        run.stderr.contains("waiting for the policy to open"),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("fra"), "v2");
}

#[test]
fn an_override_goes_through_audited_and_recorded() {
    let p = exec_project(&windowed());
    let run = at(
        &p,
        "2026-10-24T12:00:00Z", // a Saturday
        &[
            "deploy",
            "--override-policy",
            "--reason",
            "hotfix for incident 7",
        ],
    )
    .expect(code::SUCCESS);
    assert!(run.stderr.contains("overriding policy"), "{}", run.stderr);
    let started = &p.kind("deploy")[0];
    assert_eq!(
        started["policy_override"]["reason"],
        "hotfix for incident 7"
    );
    assert_eq!(started["policy_override"]["actor"], "alice");
    assert!(
        started["policy_override"]["overridden"][0]
            .as_str()
            .unwrap()
            .contains("eu-business"),
        "{started}"
    );
    let audit = p.audit();
    let notice = audit
        .iter()
        .find(|a| {
            a["title"]
                .as_str()
                .unwrap()
                .starts_with("policy overridden")
        })
        .expect("a P1 audit record of the override");
    assert_eq!(notice["priority"], "P1");
    assert!(
        notice["message"].as_str().unwrap().contains("alice"),
        "{notice}"
    );
    // A reason is required.
    at(&p, "2026-10-24T12:00:00Z", &["deploy", "--override-policy"]).expect(code::USAGE);
}

#[test]
fn stop_the_line_blocks_deploys_until_it_ends_and_never_blocks_a_rollback() {
    let p = exec_project(THREE_STAGES);
    at(&p, "2026-12-01T10:00:00Z", &["deploy"]).expect(code::SUCCESS);
    let run = at(
        &p,
        "2026-12-01T10:05:00Z",
        &["freeze", "start", "--reason", "incident 4711"],
    )
    .expect(code::SUCCESS);
    assert!(
        run.stdout.contains("alice stopped the line"),
        "{}",
        run.stdout
    );
    let freeze = p.kind("freeze");
    assert_eq!(freeze.len(), 1);
    assert_eq!(freeze[0]["action"], "start");

    let mut p = p;
    p.env("TEST_VERSION", "v3");
    let run = at(&p, "2026-12-01T10:06:00Z", &["deploy"]).expect(code::BLOCKED);
    assert!(
        run.stderr.contains("the line is stopped by alice") && run.stderr.contains("incident 4711"),
        "{}",
        run.stderr
    );
    let status = at(&p, "2026-12-01T10:06:00Z", &["status"]).expect(code::SUCCESS);
    assert!(status.stdout.contains("LINE STOPPED"), "{}", status.stdout);

    // The way back is always open: it warns and records.
    let run = at(
        &p,
        "2026-12-01T10:07:00Z",
        &[
            "rollback", "--to", "v1", "--yes", "--force", "--reason", "bad",
        ],
    )
    .expect(code::SUCCESS);
    assert!(
        run.stderr.contains("policy never blocks a way back"),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("lhr"), "v1");
    assert!(p.audit().iter().any(|a| a["priority"] == "P2"
        && a["title"]
            .as_str()
            .unwrap()
            .starts_with("rollback while policy is closed")));

    at(
        &p,
        "2026-12-01T10:10:00Z",
        &["freeze", "end", "--reason", "fixed"],
    )
    .expect(code::SUCCESS);
    at(&p, "2026-12-01T10:11:00Z", &["deploy"]).expect(code::SUCCESS);
    let p1: Vec<serde_json::Value> = p
        .audit()
        .into_iter()
        .filter(|a| a["priority"] == "P1" && a["title"].as_str().unwrap().starts_with("line "))
        .collect();
    assert_eq!(
        p1.len(),
        2,
        "a P1 notification on start and on end: {p1:#?}"
    );
}

#[test]
fn a_freeze_with_until_ends_by_itself() {
    let p = exec_project(THREE_STAGES);
    at(
        &p,
        "2026-12-01T10:00:00Z",
        &[
            "freeze",
            "start",
            "--reason",
            "migration",
            "--until",
            "1h",
            "--stage",
            "primary",
        ],
    )
    .expect(code::SUCCESS);
    at(&p, "2026-12-01T10:30:00Z", &["deploy"]).expect(code::BLOCKED);
    at(&p, "2026-12-01T11:00:01Z", &["deploy"]).expect(code::SUCCESS);
    // A stage that does not exist is refused and changes nothing.
    let run = at(
        &p,
        "2026-12-01T11:00:01Z",
        &["freeze", "start", "--reason", "x", "--stage", "primray"],
    )
    .expect(code::USAGE);
    assert!(
        run.stderr.contains("did you mean `primary`?"),
        "{}",
        run.stderr
    );
    assert_eq!(p.kind("freeze").len(), 1);
}

#[test]
fn policy_shows_what_is_open_now_and_what_opens_next() {
    let p = exec_project(&windowed());
    let run = at(&p, "2026-10-24T12:00:00Z", &["policy"]).expect(code::SUCCESS);
    assert!(run.stdout.contains("canary       open"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("primary      closed: outside window `eu-business`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("`eu-business` opens Mon 2026-10-26 09:00 GMT (2026-10-26 09:00 UTC)"),
        "{}",
        run.stdout
    );
    let json = at(
        &p,
        "2026-10-24T12:00:00Z",
        &["policy", "--at", "2026-10-26T10:00:00Z", "--format", "json"],
    )
    .expect(code::SUCCESS)
    .json();
    assert_eq!(json["stages"][1]["open"], true, "{json}");
    assert_eq!(
        json["stages"][1]["closes"], "2026-10-26T16:00:00Z",
        "{json}"
    );
    // The dry run shows it too.
    let run = at(&p, "2026-10-24T12:00:00Z", &["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("policy now (2026-10-24T12:00:00Z)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("full         closed"), "{}", run.stdout);
}

#[test]
fn validate_checks_windows_and_freezes() {
    let p = Project::with_config(&format!(
        "{THREE_STAGES}\n[[window]]\nname = \"w\"\ndays = [\"Mnd\", \"Thrusday\"]\nstart = \"9am\"\nend = \"16:00\"\ntz = \"Europe/Londn\"\nstages = [\"primray\"]\n\n[[freeze]]\nname = \"f\"\nfrom = \"2027-01-05T00:00:00Z\"\nto = \"2026-12-22T00:00:00Z\"\n"
    ));
    let run = p.run(&["validate"]).expect(code::USAGE);
    for needle in [
        "invalid day `Mnd`",
        "did you mean `Monday`?",
        "invalid day `Thrusday`",
        "did you mean `Thursday`?",
        "invalid time `9am`",
        "unknown time zone `Europe/Londn`",
        "did you mean `Europe/London`?",
        "no stage named `primray`",
        "freeze `f` ends before it starts",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
}

/// `[policy] override_requires = "approval"`: an override waits for someone else's approval
/// of `policy-override` before anything deploys; a rejection changes nothing.
#[test]
fn an_override_that_requires_approval_waits_for_one() {
    let config = format!(
        "{}\n[policy]\noverride_requires = \"approval\"\n",
        windowed()
    );
    let p = exec_project(&config);
    let args = ["deploy", "--override-policy", "--reason", "hotfix"];
    let spawn = || {
        p.command(&args)
            .env("SHIPGATE_NOW", "2026-10-24T12:00:00Z")
            .env("GITHUB_ACTOR", "alice")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let requested = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let reqs: Vec<serde_json::Value> = p
                .kind("approval")
                .into_iter()
                .filter(|a| a["decision"] == "requested" && a["stage"] == "policy-override")
                .collect();
            if reqs.len() >= n {
                return reqs[n - 1]["deploy_id"].as_str().unwrap().to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no approval request");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let decide = |args: &[&str]| -> Run {
        p.command(args)
            .env("SHIPGATE_NOW", "2026-10-24T12:00:05Z")
            .env("GITHUB_ACTOR", "bob")
            .output()
            .unwrap()
            .into()
    };

    let child = spawn();
    let id = requested(1);
    assert_eq!(p.live("lhr"), "v1", "nothing deploys before the approval");
    decide(&[
        "reject",
        &id,
        "--stage",
        "policy-override",
        "--reason",
        "not now",
    ])
    .expect(code::SUCCESS);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::BLOCKED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.live("lhr"), "v1");

    let child = spawn();
    let id = requested(2);
    decide(&["approve", &id, "--stage", "policy-override"]).expect(code::SUCCESS);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::SUCCESS),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.live("fra"), "v2");
}

/// Was (review): a line stopped while a deploy ran through its canary, or waited for an
/// approval, was ignored once the approval came, and an override went through a line stopped
/// after it was granted. The next stage is checked when its turn comes, after any wait.
#[test]
fn a_line_stopped_mid_deploy_stops_it_before_the_next_stage_even_after_an_approval() {
    let config = THREE_STAGES.replace(
        "name = \"primary\"\nregions = [\"ewr\"]",
        "name = \"primary\"\nregions = [\"ewr\"]\napproval = { required = 1, timeout = \"1m\" }",
    );
    let p = exec_project(&config);
    let child = p
        .command(&["deploy"])
        .env("GITHUB_ACTOR", "alice")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the approval request", || {
        p.kind("approval")
            .iter()
            .any(|a| a["decision"] == "requested")
    });
    let id = p.kind("deploy")[0]["deploy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = |args: &[&str]| -> Run {
        p.command(args)
            .env("GITHUB_ACTOR", "bob")
            .output()
            .unwrap()
            .into()
    };
    bob(&["freeze", "start", "--reason", "incident"]).expect(code::SUCCESS);
    bob(&["approve", &id, "--stage", "primary"]).expect(code::SUCCESS);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::BLOCKED), "{stderr}");
    assert!(stderr.contains("the line is stopped by bob"), "{stderr}");
    assert_eq!(p.live("ewr"), "v1", "primary never deployed");
    assert_eq!(p.live("lhr"), "v2", "the canary stays as it is");

    // One stopped line at a time: a second start is refused and changes nothing.
    let run =
        bob(&["freeze", "start", "--reason", "narrower", "--stage", "full"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("the line is already stopped"),
        "{}",
        run.stderr
    );
    assert_eq!(p.kind("freeze").len(), 1);
    bob(&["freeze", "end"]).expect(code::SUCCESS);

    // An override goes through the closed window it was granted for, not a line stopped
    // after it started.
    let mut p2 = exec_project(&windowed());
    p2.env("DEPLOY_SLEEP", "2");
    let child = p2
        .command(&["deploy", "--override-policy", "--reason", "hotfix"])
        .env("SHIPGATE_NOW", "2026-10-24T12:00:00Z")
        .env("GITHUB_ACTOR", "alice")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the canary starts", || !p2.kind("stage").is_empty());
    let run: Run = p2
        .command(&["freeze", "start", "--reason", "incident"])
        .env("GITHUB_ACTOR", "bob")
        .output()
        .unwrap()
        .into();
    run.expect(code::SUCCESS);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::BLOCKED), "{stderr}");
    assert_eq!(p2.live("ewr"), "v1", "{stderr}");
}
