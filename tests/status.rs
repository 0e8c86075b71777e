//! `shipgate status` from history and status.json, interrupted deploys, and the deploy lock
//! (`shipgate lock`, held-lock errors, a killed holder).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shipgate::ledger::lock::{self, LockInfo};

use crate::common::{code, Project};
use crate::history::{fixture, helper, write_chain};

const CONFIG: &str = r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["true"]
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
[[stage]]
name = "primary"
regions = ["ewr"]
"#;

fn project() -> Project {
    let p = Project::with_config(CONFIG);
    write_chain(&p.state_dir().join("history.jsonl"), &fixture());
    p
}

fn region<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("no region {name} in {v}"))
}

/// `{}` or `[]` parse as JSON but are not a state shipgate wrote: read as "nothing deployed",
/// `status --check` would pass without checking a thing.
#[test]
fn an_empty_object_status_json_is_rebuilt_not_trusted() {
    let p = project();
    let truth = p
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    for bogus in ["{}", "[]", "{\"regions\": {}}"] {
        p.write(".shipgate/status.json", bogus);
        let r = p.run(&["status", "--format", "json"]).expect(code::SUCCESS);
        assert!(
            r.stderr.contains("rebuilt it from history"),
            "{bogus}: {}",
            r.stderr
        );
        assert_eq!(r.json()["regions"], truth["regions"], "{bogus}");
    }
}

#[test]
fn status_is_rebuilt_from_history_when_status_json_is_missing() {
    let p = project();
    let r = p.run(&["status", "--format", "json"]).expect(code::SUCCESS);
    let v = r.json();
    assert_eq!(v["app"], "web");
    // d3 (v3) failed in canary and rolled lhr and nrt back to v2; ewr kept v2 from d2.
    let lhr = region(&v, "lhr");
    assert_eq!(
        (lhr["version"].as_str(), lhr["status"].as_str()),
        (Some("v2"), Some("rolled_back"))
    );
    assert_eq!(lhr["stage"], "canary");
    assert_eq!(lhr["actor"], "alice");
    let ewr = region(&v, "ewr");
    assert_eq!(ewr["version"], "v2");
    assert_eq!(ewr["deploy_id"], "d2");
    assert_eq!(ewr["deployed_at"], "2026-01-11T10:03:00.000Z");
    assert_eq!(ewr["status"], "success");
    assert_eq!(v["last_deploy"]["deploy_id"], "d4");
    // The rebuilt state is kept, so the next reader need not rebuild it.
    let saved: Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(saved["regions"]["ewr"]["version"], "v2");
    assert_eq!(
        p.run(&["status", "--format", "json"])
            .expect(code::SUCCESS)
            .json(),
        v
    );
}

#[test]
fn an_interrupted_deploy_is_listed() {
    let p = project();
    let v = p
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    let interrupted = v["interrupted"].as_array().unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0]["deploy_id"], "d4");
    assert_eq!(interrupted[0]["status"], "started");
    assert_eq!(interrupted[0]["version"], "v4");
    let r = p.run(&["status"]).expect(code::SUCCESS);
    assert!(
        r.stdout.contains("interrupted (started, never finished):"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  d4 version v4 started 2026-01-13 10:00 by alice (last status: started)"),
        "{}",
        r.stdout
    );
}

/// The newest record that changes the state: the `last_record` of a current `status.json`.
fn last_state_record(p: &Project) -> Value {
    p.history()
        .into_iter()
        .rev()
        .find(|r| r["kind"] != "gate" && r["kind"] != "event")
        .unwrap()
}

#[test]
fn status_json_is_used_when_present_and_extra_regions_are_shown() {
    let p = project();
    // Only a status.json that is the fold of all of history is used: it names the last record.
    let last = last_state_record(&p);
    p.write(
        ".shipgate/status.json",
        &json!({"app": "web", "updated_at": "2026-02-01T00:00:00Z", "last_record": last["id"],
                "fold": 2,
                "regions": {"lhr": {"version": "v7", "deployed_at": "2026-02-01T00:00:00Z",
                                    "deploy_id": "d7", "status": "success", "actor": "bob"},
                            "syd": {"version": "v6", "status": "success"}}})
        .to_string(),
    );
    let v = p
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(region(&v, "lhr")["version"], "v7");
    assert_eq!(region(&v, "syd")["version"], "v6");
    assert_eq!(region(&v, "syd")["stage"], Value::Null);
    assert_eq!(region(&v, "ewr")["version"], "");
    let names: Vec<_> = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["region"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["lhr", "nrt", "ewr", "syd"]);
    let r = p.run(&["status"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("lhr      canary    v7"), "{}", r.stdout);
    // This one was written by hand: it is no fold of history.
    p.skip_fold_check();
}

/// A `status.json` an older shipgate wrote lacks what the fold keeps now (`open_deploys`): it is
/// rebuilt from history once, without a warning, and the rebuilt file is kept.
#[test]
fn a_status_json_an_older_shipgate_wrote_is_rebuilt_once_silently() {
    let p = project();
    let last = last_state_record(&p);
    p.write(
        ".shipgate/status.json",
        &json!({"app": "web", "updated_at": "2026-02-01T00:00:00Z", "last_record": last["id"],
                "regions": {"lhr": {"version": "v7", "status": "success"}}})
        .to_string(),
    );
    let r = p.run(&["status", "--format", "json"]).expect(code::SUCCESS);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    // History's version, not the old file's.
    assert_ne!(region(&r.json(), "lhr")["version"], "v7");
    let kept: Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(kept["fold"], 2);
}

#[test]
fn status_works_with_only_a_state_dir() {
    let p = Project::new();
    write_chain(&p.state_dir().join("history.jsonl"), &fixture());
    let dir = p.state_dir().display().to_string();
    let v = p
        .run(&["--state-dir", &dir, "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(region(&v, "ewr")["version"], "v2");
    p.run(&["--state-dir", &dir, "status", "--check"])
        .expect(code::USAGE);
}

// --- the deploy lock -------------------------------------------------------------------------

const HOLD_DIR: &str = "SHIPGATE_TEST_HOLD_LOCK_DIR";

/// Helper: takes the deploy lock in `HOLD_DIR` and holds it until killed.
#[test]
#[ignore = "helper run by other tests in a child process"]
fn helper_hold_lock() {
    let Ok(dir) = std::env::var(HOLD_DIR) else {
        return;
    };
    let info = LockInfo::current("deploy", "01HOLDER", "carol");
    let _guard = lock::acquire(Path::new(&dir), &info, None).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

fn hold_lock(dir: &Path) -> std::process::Child {
    let child = helper("status::helper_hold_lock")
        .env(HOLD_DIR, dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock::holder(dir)
        .unwrap()
        .is_none_or(|h| h.deploy_id.is_empty())
    {
        assert!(Instant::now() < deadline, "the helper never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_held_lock_names_its_holder_and_a_killed_holder_frees_it() {
    let p = Project::with_config(CONFIG);
    let dir = p.state_dir();
    let mut child = hold_lock(&dir);
    // Another taker gets exit 5 and the holder's details.
    let err = lock::acquire(&dir, &LockInfo::current("deploy", "01ME", "dave"), None)
        .err()
        .unwrap();
    assert_eq!(err.exit_code(), code::LOCKED);
    for part in [
        &child.id().to_string(),
        "carol",
        "01HOLDER",
        "deploy",
        &lock::hostname(),
    ] {
        assert!(
            err.message.contains(part),
            "{part} missing from {}",
            err.message
        );
    }
    assert!(err.hint.unwrap().contains("--lock-wait 10m"));

    let r = p
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS);
    let v = r.json();
    assert_eq!(v["held"], true);
    assert_eq!(v["holder"]["deploy_id"], "01HOLDER");
    assert_eq!(v["holder"]["pid"], child.id());
    let r = p.run(&["lock", "status"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("held by pid"), "{}", r.stdout);
    // status shows the deploy as running
    let r = p.run(&["status"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("holds the deploy lock"), "{}", r.stdout);

    // Release without --force refuses.
    let r = p.run(&["lock", "release"]).expect(code::LOCKED);
    assert!(r.stderr.contains("01HOLDER"), "{}", r.stderr);

    // SIGKILL the holder: the kernel drops its flock; its details stay as a stale body.
    child.kill().unwrap();
    child.wait().unwrap();
    let v = p
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(v["held"], false);
    assert_eq!(v["stale"]["deploy_id"], "01HOLDER");
    let r = p.run(&["lock", "status"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("not held"), "{}", r.stdout);
    let g = lock::acquire(&dir, &LockInfo::current("deploy", "01ME", "dave"), None).unwrap();
    drop(g);
    // The stale body of a crashed holder: release clears it.
    let _ = hold_lock(&dir).kill();
    std::thread::sleep(Duration::from_millis(100));
    let r = p.run(&["lock", "release"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("crashed holder"), "{}", r.stderr);
    let v = p
        .run(&["lock", "status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(
        (v["held"].as_bool(), v["stale"].is_null()),
        (Some(false), true)
    );
    let r = p.run(&["lock", "release"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("not held"), "{}", r.stderr);
}

#[test]
fn lock_wait_polls_until_a_killed_holder_lets_go() {
    let p = Project::new();
    let dir = p.state_dir();
    let mut child = hold_lock(&dir);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        child.kill().unwrap();
        child.wait().unwrap();
    });
    let start = Instant::now();
    let guard = lock::acquire(
        &dir,
        &LockInfo::current("deploy", "01WAIT", "erin"),
        Some(Duration::from_secs(20)),
    );
    assert!(guard.is_ok());
    assert!(start.elapsed() >= Duration::from_millis(600));
    killer.join().unwrap();
}

#[test]
fn force_release_removes_a_live_holders_lock_warns_and_audits() {
    let p = Project::with_config(CONFIG);
    let dir = p.state_dir();
    let mut child = hold_lock(&dir);
    let r = p.run(&["lock", "release", "--force"]).expect(code::SUCCESS);
    assert!(r.stderr.contains("FORCE-RELEASED"), "{}", r.stderr);
    assert!(
        r.stderr.contains("01HOLDER") && r.stderr.contains("may still be"),
        "{}",
        r.stderr
    );
    // The next deploy takes a fresh lock although the old holder still runs.
    let g = lock::acquire(&dir, &LockInfo::current("deploy", "01NEXT", "frank"), None).unwrap();
    assert_eq!(lock::holder(&dir).unwrap().unwrap().deploy_id, "01NEXT");
    drop(g);
    let r = p
        .run(&["history", "--audit", "--format", "jsonl"])
        .expect(code::SUCCESS);
    let a: Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (a["priority"].as_str(), a["title"].as_str()),
        (Some("P3"), Some("lock force-released"))
    );
    assert_eq!(a["context"]["holder"]["deploy_id"], "01HOLDER");
    child.kill().unwrap();
    child.wait().unwrap();
}

mod live_and_check {
    use crate::common::http::{Reply, Server};
    use crate::common::pipeline::{exec_project, THREE_STAGES};
    use crate::common::{code, fakes, Project};

    fn deployed() -> Project {
        let p = exec_project(THREE_STAGES);
        p.run(&["deploy"]).expect(code::SUCCESS);
        p
    }

    /// A failed rollback leaves a region a human must look at: plain `status` says so (exit 0,
    /// it reports), `--check` counts it as a problem, still probes its gates, and never probes
    /// `{version}` as "unknown": a gate that needs it gets the version the adapter reads.
    #[test]
    fn a_region_whose_rollback_failed_needs_a_human() {
        const SEEN: &str = "#!/bin/sh\ndir=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\necho \"$1 $2\" >> \"$dir/state/seen.calls\"\n";
        let config = format!(
            "{}\n[gate.seen]\ntype = \"command\"\nrun = [\"./seen.sh\", \"{{region}}\", \"{{version}}\"]\ninterval = \"100ms\"\n",
            THREE_STAGES.replace("gates = [\"health\"]", "gates = [\"health\", \"seen\"]")
        );
        let mut p = exec_project(&config);
        p.script("seen.sh", SEEN);
        p.run(&["deploy"]).expect(code::SUCCESS);
        p.env("TEST_VERSION", "v3")
            .env("BAD_VERSION", "v3")
            .env("FAIL_GATE", "lhr")
            .env("FAIL_ROLLBACK", "lhr");
        p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
        let v = p
            .run(&["status", "--format", "json"])
            .expect(code::SUCCESS)
            .json();
        let attention = v["attention"].as_array().unwrap();
        assert_eq!(attention.len(), 1, "{v}");
        assert!(
            attention[0]
                .as_str()
                .unwrap()
                .starts_with("lhr: the rollback of deploy "),
            "{v}"
        );
        let human = p.run(&["status"]).expect(code::SUCCESS);
        assert!(human.stdout.contains("needs a human:"), "{}", human.stdout);
        std::fs::remove_file(p.path().join("state/seen.calls")).unwrap();
        let check = p.run(&["status", "--check"]).expect(code::CHECK_FAILED);
        assert!(
            check.stdout.contains(
                "lhr: runs v3 since a failed rollback, a cancel or a kill; a human must look"
            ),
            "{}",
            check.stdout
        );
        // Its gates are still probed: lhr still runs the bad v3 its rollback failed to leave.
        assert!(
            check.stdout.contains("lhr: gate health (P1) tripped"),
            "{}",
            check.stdout
        );
        // `{version}` is what runs there (read from the adapter), never the placeholder.
        let seen = p.read("state/seen.calls");
        assert!(seen.lines().any(|l| l == "lhr v3"), "{seen}");
        assert!(!seen.contains("unknown"), "{seen}");
        // The other regions are still checked.
        assert!(
            check.stdout.contains("gate health (P1): pass"),
            "{}",
            check.stdout
        );
    }

    /// The state rebuilt from history is the state the deploy wrote: a rollback that failed in
    /// one region says nothing bad about the regions it did return.
    #[test]
    fn the_rebuilt_state_after_a_partly_failed_rollback_matches_the_written_one() {
        let mut p = deployed();
        p.env("TEST_VERSION", "v3")
            .env("BAD_VERSION", "v3")
            .env("FAIL_GATE", "ewr")
            .env("FAIL_ROLLBACK", "ewr");
        p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
        let written = p
            .run(&["status", "--format", "json"])
            .expect(code::SUCCESS)
            .json();
        let pick = |v: &serde_json::Value| -> Vec<(String, String, String, String)> {
            v["regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                    (s("region"), s("version"), s("status"), s("deploy_id"))
                })
                .collect()
        };
        let ewr = pick(&written).into_iter().find(|r| r.0 == "ewr").unwrap();
        // Read back after the failed rollback: it still runs the bad version.
        assert_eq!((ewr.1.as_str(), ewr.2.as_str()), ("v3", "rollback_failed"));
        p.write(".shipgate/status.json", "{}");
        let rebuilt = p
            .run(&["status", "--format", "json"])
            .expect(code::SUCCESS)
            .json();
        assert_eq!(pick(&rebuilt), pick(&written), "{rebuilt}\n{written}");
        assert_eq!(rebuilt["attention"], written["attention"]);
    }

    #[test]
    fn live_agrees_with_history_then_flags_drift() {
        let p = deployed();
        let run = p
            .run(&["status", "--live", "--format", "json"])
            .expect(code::SUCCESS);
        let v = run.json();
        let lhr = v["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == "lhr")
            .unwrap();
        assert_eq!(lhr["live"]["value"], "v2");
        assert_eq!(lhr["drift"], false);
        // Someone deployed by hand.
        p.write("state/ord", "hotfix-1\n");
        let run = p.run(&["status", "--live"]).expect(code::CHECK_FAILED);
        assert!(
            run.stdout
                .contains("ord: drift: runs hotfix-1, history says v2"),
            "{}",
            run.stdout
        );
    }

    #[test]
    fn live_reports_mixed_fly_regions_as_drift() {
        let app = "web";
        let config = format!(
            "[app]\nname = \"{app}\"\n[target]\nadapter = \"fly\"\nimage = \"registry.fly.io/web:{{version}}\"\n[target.fly]\napp = \"{app}\"\n[[stage]]\nname = \"all\"\nregions = [\"lhr\", \"ewr\"]\non_failure = \"continue\"\n"
        );
        let mut p = Project::with_config(&config);
        fakes::install(p.path(), "flyctl");
        fakes::fly_seed(
            p.path(),
            app,
            "registry.fly.io/web:v1",
            &[("lhr", 2), ("ewr", 2)],
        );
        p.env("SHIPGATE_VERSION", "v2");
        fakes::knob(p.path(), "partial-deploy-ewr", "");
        // The deploy notices ewr is mixed and fails it; under `continue` it stays mixed.
        p.run(&["deploy"]).expect(code::PARTIAL);
        let run = p
            .run(&["status", "--live", "--format", "json"])
            .expect(code::CHECK_FAILED);
        let v = run.json();
        let ewr = v["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == "ewr")
            .unwrap();
        assert_eq!(ewr["live"]["state"], "mixed", "{ewr}");
        assert_eq!(ewr["drift"], true);
    }

    /// A command gate that fails on the first call after `state/flaky.arm` appears (and only
    /// that one: `mv` is atomic, so one caller wins) and passes otherwise; every call is counted
    /// in `state/flaky.calls`.
    const FLAKY: &str = r#"#!/bin/sh
dir="$(cd "$(dirname "$0")" && pwd)"
echo "$1" >> "$dir/state/flaky.calls"
if mv "$dir/state/flaky.arm" "$dir/state/flaky.fired.$$" 2>/dev/null; then
  echo "$1: HTTP 503 (flaky)" >&2
  exit 1
fi
echo "$1 ok"
"#;

    /// THREE_STAGES with its gate replaced by `gate` (a `[gate.health]` table body).
    fn with_health_gate(gate: &str) -> String {
        let start = THREE_STAGES.find("[gate.health]").unwrap();
        format!("{}[gate.health]\n{gate}\n", &THREE_STAGES[..start])
    }

    fn row<'a>(v: &'a serde_json::Value, region: &str) -> &'a serde_json::Value {
        v["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == region)
            .unwrap_or_else(|| panic!("no region {region} in {v}"))
    }

    /// The trip rule of `status --check` is the deploy's: a P0 gate with `failures = 3` that
    /// fails once does not trip a deploy, and does not trip the check either.
    #[test]
    fn a_p0_gate_with_failures_3_that_fails_once_does_not_trip_status_check() {
        let p = exec_project(&with_health_gate(
            "type = \"command\"\nrun = [\"./flaky.sh\", \"{region}\"]\ninterval = \"100ms\"\ntimeout = \"5s\"\nseverity = \"P0\"\nfailures = 3\n",
        ));
        p.script("flaky.sh", FLAKY);
        // During a deploy one failed probe is not a trip.
        p.write("state/flaky.arm", "");
        p.run(&["deploy"]).expect(code::SUCCESS);
        assert!(
            !p.path().join("state/flaky.arm").exists(),
            "the gate never failed"
        );
        // Nor in the check.
        p.write("state/flaky.arm", "");
        let run = p
            .run(&["status", "--check", "--format", "json"])
            .expect(code::SUCCESS);
        assert!(
            !p.path().join("state/flaky.arm").exists(),
            "the gate never failed"
        );
        let v = run.json();
        assert_eq!(v["ok"], true, "{v}");
        let probes: Vec<u64> = ["lhr", "nrt", "ewr", "ord", "fra"]
            .iter()
            .map(|r| {
                let g = &row(&v, r)["gates"][0];
                assert_eq!(
                    (g["gate"].as_str(), g["pass"].as_bool()),
                    (Some("health"), Some(true)),
                    "{v}"
                );
                g["probes"].as_u64().unwrap()
            })
            .collect();
        // The region whose first probe failed was probed again, the others once.
        let mut sorted = probes.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 1, 1, 1, 2], "{v}");
    }

    /// A cron check on a fresh runner (no deploy recorded) still probes every region of the
    /// config: a gate that fails there is a problem, not a silent green.
    #[test]
    fn status_check_with_no_recorded_deploy_probes_every_region() {
        let mut p = exec_project(THREE_STAGES);
        // Every region runs v1 (not deployed by shipgate); ewr is unhealthy on it.
        p.env("FAIL_GATE", "ewr").env("BAD_VERSION", "v1");
        let run = p
            .run(&["status", "--check", "--format", "json"])
            .expect(code::CHECK_FAILED);
        let v = run.json();
        assert_eq!(v["ok"], false, "{v}");
        let problems = v["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "{v}");
        let problem = problems[0].as_str().unwrap();
        assert!(
            problem.starts_with("ewr: gate health (P1) tripped") && problem.contains("HTTP 503"),
            "{problem}"
        );
        for r in ["lhr", "nrt", "ewr", "ord", "fra"] {
            let g = &row(&v, r)["gates"];
            assert_eq!(g[0]["gate"], "health", "{r} not probed: {v}");
            assert_eq!(g[0]["pass"], r != "ewr", "{r}: {v}");
        }
        assert!(!run.stderr.contains("gates not checked"), "{}", run.stderr);
        // A check never writes history.
        assert!(p.history().is_empty(), "{:?}", p.history());
    }

    /// With no deploy recorded, a gate that needs `{version}` gets the live version from the
    /// adapter; when the adapter cannot tell (no `current` command), the gate cannot be probed
    /// and that is a problem naming why, while a gate without `{version}` is still probed.
    #[test]
    fn status_check_with_no_recorded_deploy_reads_the_version_a_gate_needs() {
        const VERSIONED: &str = r#"#!/bin/sh
dir="$(cd "$(dirname "$0")" && pwd)"
echo "$1 $2" >> "$dir/state/versioned.calls"
[ "$2" = "v1" ] || { echo "$1: expected v1, got '$2'" >&2; exit 1; }
echo "$1 serves $2"
"#;
        let gates = "type = \"command\"\nrun = [\"./health.sh\", \"{region}\"]\ninterval = \"100ms\"\nseverity = \"P1\"\nfailures = 2\n\n[gate.versioned]\ntype = \"command\"\nrun = [\"./versioned.sh\", \"{region}\", \"{version}\"]\ninterval = \"100ms\"\nseverity = \"P0\"\n";
        let config = with_health_gate(gates).replace(
            "gates = [\"health\"]",
            "gates = [\"health\", \"versioned\"]",
        );
        let p = exec_project(&config);
        p.script("versioned.sh", VERSIONED);
        let v = p
            .run(&["status", "--check", "--format", "json"])
            .expect(code::SUCCESS)
            .json();
        assert_eq!(v["ok"], true, "{v}");
        let mut calls: Vec<String> = p
            .read("state/versioned.calls")
            .lines()
            .map(str::to_string)
            .collect();
        calls.sort();
        assert_eq!(calls, ["ewr v1", "fra v1", "lhr v1", "nrt v1", "ord v1"]);

        // Without `current`, nothing tells the version.
        let p = exec_project(&config.replace("current = [\"./current.sh\", \"{region}\"]\n", ""));
        p.script("versioned.sh", VERSIONED);
        let run = p
            .run(&["status", "--check", "--format", "json"])
            .expect(code::CHECK_FAILED);
        let v = run.json();
        assert!(
            !p.path().join("state/versioned.calls").exists(),
            "probed without a version"
        );
        let problems: Vec<&str> = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(problems.len(), 5, "{v}");
        for (problem, r) in problems.iter().zip(["lhr", "nrt", "ewr", "ord", "fra"]) {
            assert!(
                problem.starts_with(&format!("{r}: gate versioned (P0) cannot be probed"))
                    && problem.contains("{version}"),
                "{problem}"
            );
            let gates = &row(&v, r)["gates"];
            assert_eq!(
                (gates[0]["gate"].as_str(), gates[0]["pass"].as_bool()),
                (Some("health"), Some(true)),
                "{v}"
            );
            assert_eq!(
                (gates[1]["gate"].as_str(), gates[1]["probes"].as_u64()),
                (Some("versioned"), Some(0)),
                "{v}"
            );
        }
    }

    #[test]
    fn check_passes_when_every_gate_passes() {
        let p = deployed();
        let run = p.run(&["status", "--check"]).expect(code::SUCCESS);
        assert!(run.stdout.contains("gate health"), "{}", run.stdout);
        // A check never writes deploy history.
        let before = p.kind("deploy").len();
        p.run(&["status", "--check"]).expect(code::SUCCESS);
        assert_eq!(p.kind("deploy").len(), before);
    }

    #[test]
    fn check_exits_6_on_a_failing_local_http_gate_and_notifies() {
        let sick = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = sick.clone();
        let health = Server::start(move |_| {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::new(503, "down")
            } else {
                Reply::new(200, "ok")
            }
        });
        let slack = Server::fixed(200, "ok");
        let config = format!(
            "{}\n[gate.web]\ntype = \"http\"\nurl = \"{}/health?region={{region}}\"\nseverity = \"P1\"\nfailures = 2\ninterval = \"50ms\"\n\n[notify.slack]\nwebhook_env = \"TEST_SLACK_URL\"\nmin_priority = \"P1\"\n",
            THREE_STAGES.replace("gates = [\"health\"]\non_failure = \"continue\"", "gates = [\"health\", \"web\"]\non_failure = \"continue\""),
            health.url
        );
        let mut p = exec_project(&config);
        p.env("TEST_SLACK_URL", &format!("{}/hook", slack.url));
        p.run(&["deploy"]).expect(code::SUCCESS);
        sick.store(true, std::sync::atomic::Ordering::SeqCst);
        let before = health.requests().len();
        let run = p
            .run(&["status", "--check", "--notify"])
            .expect(code::CHECK_FAILED);
        assert!(run.stdout.contains("HTTP 503"), "{}", run.stdout);
        // P1 gates are probed up to their failure count: 2 probes for each of ord and fra.
        let probes: Vec<String> = health.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(probes.len(), 4, "{probes:?}");
        assert_eq!(
            probes.iter().filter(|p| p.ends_with("region=fra")).count(),
            2,
            "{probes:?}"
        );
        let hooks = slack
            .requests()
            .into_iter()
            .filter(|r| r.body.contains("web"))
            .count();
        assert_eq!(hooks, 1, "one alert naming the gate");
        assert!(
            p.audit().iter().any(|a| a["priority"] == "P1"
                && a["delivered"] == serde_json::json!(["slack"])
                && a["message"].as_str().unwrap_or("").contains("web")),
            "{:?}",
            p.audit()
        );
        // Without --notify nothing more is sent.
        let sent = slack.requests().len();
        p.run(&["status", "--check"]).expect(code::CHECK_FAILED);
        assert_eq!(slack.requests().len(), sent);
    }
}
