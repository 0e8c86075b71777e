//! Approvals per stage (issue 14, item 4): a stage with `approval = { … }` waits for
//! `shipgate approve` before it deploys; with `[approvals] allowed_signers` every approval is
//! signed with a real SSH key (`ssh-keygen -Y sign -n shipgate`) and verified before it counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::code;
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::process::{signal, wait_until, SIGINT};
use crate::common::{Project, Run};

/// A canary stage without approval, then `primary` (ewr) with `approval`, and `[approvals]`.
fn pipeline(approval: &str, approvals: &str) -> String {
    format!(
        r#"{header}
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
gates = ["health"]

[[stage]]
name = "primary"
regions = ["ewr"]
gates = ["health"]
approval = {approval}

[gate.health]
type = "command"
run = ["./health.sh", "{{region}}"]
interval = "100ms"
timeout = "5s"
failures = 2

{approvals}
"#,
        header = exec_header()
    )
}

/// An ed25519 key pair made by `ssh-keygen` in `dir`: the private key's path and the
/// public key line.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// A signed-approvals project: `alice@example.com` is the only allowed signer; `mallory` has a
/// key nobody allowed. The deploy runs as `deployer`.
struct Signed {
    p: Project,
    alice: PathBuf,
    mallory: PathBuf,
}

fn signed(approval: &str) -> Signed {
    let mut p = exec_project(&pipeline(
        approval,
        "[approvals]\nallowed_signers = \"allowed_signers\"\n",
    ));
    std::fs::create_dir_all(p.path().join("keys")).unwrap();
    let (alice, alice_pub) = keygen(&p.path().join("keys"), "alice");
    let (mallory, _) = keygen(&p.path().join("keys"), "mallory");
    p.write(
        "allowed_signers",
        &format!("alice@example.com namespaces=\"shipgate\" {alice_pub}\n"),
    );
    p.env("SHIPGATE_ACTOR", "deployer");
    Signed { p, alice, mallory }
}

fn spawn_deploy(p: &Project) -> Child {
    p.command(&["deploy"])
        .env_remove("GITHUB_ACTOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Run {
    child.wait_with_output().unwrap().into()
}

fn approvals(p: &Project, decision: &str) -> Vec<Value> {
    p.kind("approval")
        .into_iter()
        .filter(|r| r["decision"] == decision)
        .collect()
}

/// Waits until the deploy asks for the approval of `primary`; its deploy id.
fn wait_for_request(p: &Project) -> String {
    wait_until("the approval request", || {
        !approvals(p, "requested").is_empty()
    });
    let request = approvals(p, "requested").remove(0);
    assert_eq!(request["stage"], "primary", "{request}");
    request["deploy_id"].as_str().unwrap().to_string()
}

/// `shipgate approve|reject` as `actor`, with `args` after the deploy id.
fn decide(p: &Project, actor: &str, verb: &str, id: &str, args: &[&str]) -> Run {
    let mut full = vec![verb, id, "--stage", "primary"];
    full.extend_from_slice(args);
    p.command(&full)
        .env_remove("GITHUB_ACTOR")
        .env_remove("SHIPGATE_SIGNING_KEY")
        .env("SHIPGATE_ACTOR", actor)
        .output()
        .unwrap()
        .into()
}

fn final_deploy(p: &Project) -> Value {
    p.kind("deploy").pop().unwrap()
}

#[test]
fn a_signed_approval_unblocks_a_waiting_deploy() {
    let s = signed(r#"{ required = 1, timeout = "30s" }"#);
    let p = &s.p;
    let child = spawn_deploy(p);
    let id = wait_for_request(p);
    // The canary ran; the approved stage waits before anything of it changes.
    wait_until("the canary", || p.live("lhr") == "v2");
    assert_eq!(p.live("ewr"), "v1");
    let key = s.alice.to_str().unwrap();
    let run = decide(
        p,
        "alice",
        "approve",
        &id,
        &["--key", key, "--reason", "looks good"],
    )
    .expect(code::SUCCESS);
    assert!(run.stderr.contains("approved"), "{}", run.stderr);
    let run = finish(child).expect(code::SUCCESS);
    assert!(
        run.stderr.contains("waiting for approval"),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("ewr"), "v2");
    let approved = approvals(p, "approved");
    assert_eq!(approved.len(), 1, "{approved:?}");
    let a = &approved[0];
    assert_eq!(a["deploy_id"], id.as_str());
    assert_eq!(a["version"], "v2");
    assert_eq!(a["actor"], "alice");
    assert_eq!(a["principal"], "alice@example.com");
    assert_eq!(a["reason"], "looks good");
    assert!(
        a["signature"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN SSH SIGNATURE-----"),
        "{a}"
    );
    // The request was a P1 notification with the exact command to run.
    let asked = p
        .audit()
        .into_iter()
        .find(|r| r["priority"] == "P1" && r["title"].as_str().unwrap().contains("approval"))
        .expect("a P1 approval notification");
    assert!(
        asked["message"]
            .as_str()
            .unwrap()
            .contains(&format!("shipgate approve {id} --stage primary")),
        "{asked}"
    );
    // In the hash chain and in the story.
    p.run(&["history", "verify"]).expect(code::SUCCESS);
    let story = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    assert!(
        story.contains("approval of stage primary requested"),
        "{story}"
    );
    assert!(
        story.contains("stage primary approved by alice (alice@example.com, signed)"),
        "{story}"
    );
}

#[test]
fn an_unknown_key_and_an_unsigned_approval_are_refused_and_the_deploy_times_out_blocked() {
    // Long enough for two signed CLI runs and a forged append on a loaded runner.
    let s =
        signed(r#"{ required = 1, timeout = "15s", remind_every = "1s", on_timeout = "stop" }"#);
    let p = &s.p;
    let child = spawn_deploy(p);
    let id = wait_for_request(p);
    let unknown = decide(
        p,
        "mallory",
        "approve",
        &id,
        &["--key", s.mallory.to_str().unwrap()],
    )
    .expect(code::USAGE);
    assert!(
        unknown.stderr.contains("not in the allowed signers"),
        "{}",
        unknown.stderr
    );
    let unsigned = decide(p, "bob", "approve", &id, &[]).expect(code::USAGE);
    assert!(
        unsigned.stderr.contains("must be signed"),
        "{}",
        unsigned.stderr
    );
    assert!(approvals(p, "approved").is_empty(), "nothing was appended");
    // An approval appended by hand with a signature that does not verify is ignored.
    let forged = shipgate::ledger::HistoryRecord::Approval(shipgate::ledger::ApprovalRecord {
        deploy_id: id.clone(),
        stage: "primary".into(),
        version: "v2".into(),
        decision: shipgate::ledger::ApprovalDecision::Approved,
        actor: "mallory".into(),
        principal: Some("alice@example.com".into()),
        signature: Some(
            "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".into(),
        ),
        ..Default::default()
    });
    shipgate::ledger::Ledger::open(&p.state_dir())
        .unwrap()
        .append_history(&forged)
        .unwrap();
    let run = finish(child).expect(code::BLOCKED);
    assert!(
        run.stderr.contains("ignored an approval of stage primary"),
        "{}",
        run.stderr
    );
    // Earlier stages are left as they are; the waiting stage never started.
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(p.live("ewr"), "v1");
    assert_eq!(final_deploy(p)["status"], "blocked");
    assert_eq!(approvals(p, "timed_out").len(), 1);
    assert!(
        !p.calls().iter().any(|c| c.starts_with("deploy ewr")),
        "{:?}",
        p.calls()
    );
    // Reminders while it waited.
    let reminders = p
        .audit()
        .into_iter()
        .filter(|r| {
            r["title"]
                .as_str()
                .unwrap()
                .starts_with("still waiting for approval")
        })
        .count();
    assert!(reminders >= 1, "{:?}", p.audit());
    // Too late now: the deploy is no longer waiting.
    let late = decide(
        p,
        "alice",
        "approve",
        &id,
        &["--key", s.alice.to_str().unwrap()],
    )
    .expect(code::USAGE);
    assert!(late.stderr.contains("not waiting"), "{}", late.stderr);
}

#[test]
fn a_signed_rejection_stops_the_deploy_and_leaves_earlier_stages() {
    let s = signed(r#"{ required = 1, timeout = "30s", on_timeout = "stop" }"#);
    let p = &s.p;
    let child = spawn_deploy(p);
    let id = wait_for_request(p);
    p.command(&["reject", &id, "--stage", "primary"])
        .output()
        .map(Run::from)
        .unwrap()
        .expect(code::USAGE); // --reason is required
                              // Unsigned.
    decide(
        p,
        "alice",
        "reject",
        &id,
        &["--reason", "migration not ready"],
    )
    .expect(code::USAGE);
    let reject = p
        .command(&[
            "reject",
            &id,
            "--stage",
            "primary",
            "--reason",
            "migration not ready",
        ])
        .env_remove("GITHUB_ACTOR")
        .env("SHIPGATE_ACTOR", "alice")
        .env("SHIPGATE_SIGNING_KEY", &s.alice)
        .output()
        .map(Run::from)
        .unwrap();
    reject.expect(code::SUCCESS);
    let run = finish(child).expect(code::BLOCKED);
    assert!(run.stderr.contains("rejected"), "{}", run.stderr);
    assert_eq!(p.live("lhr"), "v2");
    assert_eq!(p.live("ewr"), "v1");
    let last = final_deploy(p);
    assert_eq!(last["status"], "blocked");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("migration not ready"),
        "{last}"
    );
    let rejected = approvals(p, "rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["principal"], "alice@example.com");
    let story = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    assert!(
        story.contains(
            "stage primary rejected by alice (alice@example.com, signed): migration not ready"
        ),
        "{story}"
    );
}

#[test]
fn an_approval_timeout_with_rollback_rolls_back_what_the_deploy_changed() {
    let mut p = exec_project(&pipeline(
        r#"{ timeout = "1s", on_timeout = "rollback" }"#,
        "",
    ));
    p.env("SHIPGATE_ACTOR", "deployer");
    let run = p
        .command(&["deploy"])
        .env_remove("GITHUB_ACTOR")
        .output()
        .map(Run::from)
        .unwrap()
        .expect(code::FAILED);
    assert!(
        run.stderr.contains("waiting for approval"),
        "{}",
        run.stderr
    );
    for r in ["lhr", "nrt", "ewr"] {
        assert_eq!(p.live(r), "v1", "{r}");
    }
    assert_eq!(final_deploy(&p)["status"], "rolled_back");
    let rb = p.kind("rollback").pop().expect("a rollback record");
    assert_eq!(rb["automatic"], true);
    assert!(rb["reason"].as_str().unwrap().contains("approval"), "{rb}");
    assert_eq!(approvals(&p, "timed_out").len(), 1);
}

#[test]
fn self_approval_is_refused_unless_the_pipeline_allows_it() {
    let mut p = exec_project(&pipeline(r#"{ required = 2, timeout = "30s" }"#, ""));
    p.env("SHIPGATE_ACTOR", "deployer");
    let child = spawn_deploy(&p);
    let id = wait_for_request(&p);
    let own = decide(&p, "deployer", "approve", &id, &[]).expect(code::USAGE);
    assert!(
        own.stderr.contains("cannot approve their own deploy"),
        "{}",
        own.stderr
    );
    // Unsigned (no allowed_signers): two distinct approvers, each counted once.
    decide(&p, "bob", "approve", &id, &[]).expect(code::SUCCESS);
    let again = decide(&p, "bob", "approve", &id, &[]).expect(code::USAGE);
    assert!(
        again.stderr.contains("already approved"),
        "{}",
        again.stderr
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(p.live("ewr"), "v1", "one approval of two is not enough");
    decide(&p, "carol", "approve", &id, &[]).expect(code::SUCCESS);
    finish(child).expect(code::SUCCESS);
    assert_eq!(p.live("ewr"), "v2");
    assert_eq!(approvals(&p, "approved").len(), 2);

    // With self_approval = true, the deployer may approve their own deploy.
    p.write(
        "pipeline.toml",
        &pipeline(
            r#"{ timeout = "30s" }"#,
            "[approvals]\nself_approval = true\n",
        ),
    );
    p.env("TEST_VERSION", "v3");
    let child = spawn_deploy(&p);
    wait_until("the second request", || {
        approvals(&p, "requested").len() == 2
    });
    let id = approvals(&p, "requested")[1]["deploy_id"]
        .as_str()
        .unwrap()
        .to_string();
    decide(&p, "deployer", "approve", &id, &[]).expect(code::SUCCESS);
    finish(child).expect(code::SUCCESS);
    assert_eq!(p.live("ewr"), "v3");
}

#[test]
fn approve_refuses_a_deploy_that_is_not_waiting_on_that_stage() {
    let mut p = exec_project(&pipeline(r#"{ timeout = "30s" }"#, ""));
    p.env("SHIPGATE_ACTOR", "deployer");
    let none = decide(&p, "bob", "approve", "01NOSUCHDEPLOY", &[]).expect(code::USAGE);
    assert!(
        none.stderr.contains("no deploy `01NOSUCHDEPLOY`"),
        "{}",
        none.stderr
    );
    let child = spawn_deploy(&p);
    let id = wait_for_request(&p);
    let wrong = p
        .command(&["approve", &id, "--stage", "canary"])
        .env("SHIPGATE_ACTOR", "bob")
        .output()
        .map(Run::from)
        .unwrap()
        .expect(code::USAGE);
    assert!(
        wrong
            .stderr
            .contains("not waiting for approval of stage canary"),
        "{}",
        wrong.stderr
    );
    decide(&p, "bob", "approve", &id, &[]).expect(code::SUCCESS);
    finish(child).expect(code::SUCCESS);
}

#[test]
fn validate_reports_bad_approval_settings_at_their_place() {
    let p = Project::with_config(&pipeline(
        r#"{ required = 0, timeout = "soon", remind_every = "0s", on_timeout = "rollbak" }"#,
        "[approvals]\nallowed_signers = \"missing_signers\"\n",
    ));
    let run = p.run(&["validate"]).expect(code::USAGE);
    for needle in [
        "`required` must be between 1 and 100",
        "invalid duration `soon`",
        "`remind_every` must be greater than zero",
        "invalid on_timeout `rollbak`",
        "did you mean `rollback`?",
        "allowed signers file",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("pipeline.toml:"), "{}", run.stderr);
}

/// The dry run says which stage waits for approval; a signal while a deploy waits for one
/// cancels it like anywhere else: exit 130, `cancelled`, what it changed rolled back.
#[test]
fn the_dry_run_names_the_wait_and_a_signal_cancels_a_waiting_deploy() {
    let p = exec_project(&pipeline(
        r#"{ required = 1, timeout = "10m", on_timeout = "stop" }"#,
        "",
    ));
    let run = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains(
            "primary      waits for 1 approval(s) before it deploys (up to 10m, then stop)"
        ),
        "{}",
        run.stdout
    );
    let child: Child = p
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the approval request", || {
        p.kind("approval")
            .iter()
            .any(|a| a["decision"] == "requested")
    });
    assert_eq!(p.live("lhr"), "v2");
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::SIGINT),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "cancelled", "{last}");
    assert_eq!(
        (p.live("lhr"), p.live("nrt"), p.live("ewr")),
        ("v1".into(), "v1".into(), "v1".into())
    );
}

/// Was (review): with signed approvals the self-approval check compared the signer's
/// principal (`alice@example.com`) with the deploy's actor (`alice`), which never matched, so
/// the deployer could approve with their own key under another actor name.
#[test]
fn a_signed_self_approval_is_refused() {
    let mut s = signed(r#"{ required = 1, timeout = "30s", on_timeout = "stop" }"#);
    s.p.env("SHIPGATE_ACTOR", "alice");
    let p = &s.p;
    let alice_key = s.alice.to_str().unwrap().to_string();
    let child = spawn_deploy(p);
    let id = wait_for_request(p);
    let run = decide(p, "not-alice", "approve", &id, &["--key", &alice_key]).expect(code::USAGE);
    assert!(
        run.stderr.contains("cannot approve their own deploy"),
        "{}",
        run.stderr
    );
    assert!(approvals(p, "approved").is_empty());
    decide(
        p,
        "bob",
        "reject",
        &id,
        &["--key", &alice_key, "--reason", "stop"],
    );
    let _ = finish(child);
}

/// A valid signature by an allowed signer, made for another deploy, appended by hand to this
/// one, does not count: the signed message binds the deploy id, stage, version and decision.
#[test]
fn a_signature_replayed_from_another_deploy_does_not_count() {
    let s = signed(r#"{ required = 1, timeout = "8s", on_timeout = "stop" }"#);
    let p = &s.p;
    let child = spawn_deploy(p);
    let id = wait_for_request(p);
    let text = shipgate::approvals::message(
        "01J00000000000000000000000",
        "primary",
        "v2",
        shipgate::ledger::ApprovalDecision::Approved,
    );
    let signature = shipgate::approvals::ssh::sign(&s.alice, &text).unwrap();
    let replayed = shipgate::ledger::HistoryRecord::Approval(shipgate::ledger::ApprovalRecord {
        deploy_id: id.clone(),
        stage: "primary".into(),
        version: "v2".into(),
        decision: shipgate::ledger::ApprovalDecision::Approved,
        actor: "bob".into(),
        principal: Some("alice@example.com".into()),
        signature: Some(signature),
        ..Default::default()
    });
    shipgate::ledger::Ledger::open(&p.state_dir())
        .unwrap()
        .append_history(&replayed)
        .unwrap();
    let run = finish(child).expect(code::BLOCKED);
    let ignored = run
        .stderr
        .lines()
        .find(|l| l.contains("ignored an approval of stage primary"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(ignored.contains("does not verify"), "{ignored}");
    assert_eq!(p.live("ewr"), "v1");
}
