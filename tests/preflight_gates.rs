//! A stage's `preflight` gates (issue 15 item 3): probed against what runs now, before the
//! deploy changes anything; a trip is exit 7 ("the baseline is unhealthy; nothing was
//! changed").

use crate::common::code;
use crate::common::pipeline::{exec_header, exec_project};

fn pipeline(preflight: &str) -> String {
    format!(
        "{}[[stage]]\nname = \"canary\"\nregions = [\"lhr\", \"nrt\"]\ngates = [\"health\"]\n\
         preflight = {preflight}\n\n[[stage]]\nname = \"primary\"\nregions = [\"ewr\"]\n\
         gates = [\"health\"]\n\n[gate.health]\ntype = \"command\"\nrun = [\"./health.sh\", \"{{region}}\"]\n\
         interval = \"100ms\"\ntimeout = \"5s\"\nseverity = \"P1\"\nfailures = 2\n",
        exec_header()
    )
}

/// lhr is already unhealthy on v1: deploying v2 would only end in a rollback to a version
/// as broken. The deploy stops before its first change, naming the gate, the region and the
/// version it probed.
#[test]
fn a_preflight_gate_tripping_on_the_current_version_blocks_with_nothing_changed() {
    let p = exec_project(&pipeline(r#"["health"]"#));
    p.write("state/lhr.bad", "v1\n");
    let d = p.run(&["deploy", "--version", "v2", "--format", "json"]);
    assert_eq!(d.code, code::BLOCKED, "{}", d.stderr);
    let result = d.json();
    assert_eq!(result["status"], "blocked", "{result:#}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.starts_with("preflight gate `health` tripped in lhr (running v1): "),
        "{message}"
    );
    assert!(message.contains("HTTP 500 (bad flag)"), "{message}");
    assert!(
        message.ends_with("the baseline is unhealthy; nothing was changed"),
        "{message}"
    );
    assert!(!message.contains("nrt"), "nrt is healthy: {message}");
    assert!(
        !p.path().join("state/calls.log").exists(),
        "nothing ran: {:?}",
        p.calls()
    );
    for r in ["lhr", "nrt", "ewr"] {
        assert_eq!(p.live(r), "v1");
    }
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "blocked", "{last:#}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("preflight gate `health` tripped in lhr"),
        "the final record says which gate blocked: {last:#}"
    );
    assert!(
        p.kind("stage").is_empty(),
        "no stage started: {:?}",
        p.kind("stage")
    );
}

/// A healthy baseline lets the deploy through; the dry run and `validate` show the preflight.
#[test]
fn a_healthy_baseline_deploys_and_the_plans_show_the_preflight() {
    let p = exec_project(&pipeline(r#"["health"]"#));
    let dry = p
        .run(&["deploy", "--version", "v2", "--dry-run"])
        .expect(code::SUCCESS);
    assert!(
        dry.stdout.contains("    preflight health: probed against what runs now before anything changes (a trip blocks the deploy, exit 7)"),
        "{}",
        dry.stdout
    );
    let v = p.run(&["validate"]).expect(code::SUCCESS);
    assert!(v.stdout.contains("    preflight health: "), "{}", v.stdout);
    let d = p.run(&["deploy", "--version", "v2"]);
    assert_eq!(d.code, code::SUCCESS, "{}", d.stderr);
    assert!(
        d.stderr.contains("preflight: probing 2 gate(s)"),
        "{}",
        d.stderr
    );
    assert_eq!((p.live("lhr"), p.live("ewr")), ("v2".into(), "v2".into()));
}

/// A preflight that names no gate is a config error at its line and column.
#[test]
fn an_unknown_preflight_gate_is_a_config_error() {
    let p = exec_project(&pipeline(r#"["helth"]"#));
    let v = p.run(&["validate"]).expect(code::USAGE);
    let line = p
        .read("pipeline.toml")
        .lines()
        .position(|l| l.starts_with("preflight = "))
        .unwrap()
        + 1;
    assert!(
        v.stderr.contains(&format!(
            "pipeline.toml:{line}:14: unknown preflight gate `helth` in stage `canary`"
        )),
        "{}",
        v.stderr
    );
    assert!(v.stderr.contains("did you mean `health`?"), "{}", v.stderr);
}
