//! The seed scenario on Fly.io (fake `flyctl`): canary lhr+nrt → primary ewr → full
//! ord/fra/sin/bom, with a real HTTP health endpoint on loopback per region.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::common::http::{Reply, Server};
use crate::common::{code, fakes, Project};

const APP: &str = "nettrace-dashboard";
const IMAGE: &str = "registry.fly.io/nettrace-dashboard";
const ALL: &[&str] = &["lhr", "nrt", "ewr", "ord", "fra", "sin", "bom"];

fn config(health_url: &str) -> String {
    format!(
        r#"
[app]
name = "{APP}"

[target]
adapter = "fly"
image = "{IMAGE}:{{version}}"

[target.fly]
app = "{APP}"
strategy = "rolling"
wait_timeout = "5m"

[defaults]
command_timeout = "30s"

[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
gates = ["api"]
timeout = "300s"
on_failure = "rollback"

[[stage]]
name = "primary"
regions = ["ewr"]
gates = ["api"]
timeout = "600s"
on_failure = "rollback"

[[stage]]
name = "full"
regions = ["ord", "fra", "sin", "bom"]
gates = ["api"]
on_failure = "continue"

[gate.api]
type = "http"
url = "{health_url}/health"
headers = {{ "fly-prefer-region" = "{{region}}" }}
expect_status = [200]
body_contains = "ok"
severity = "P0"
interval = "100ms"
timeout = "2s"
"#
    )
}

/// A fly app at v1 in seven regions, and a health endpoint that answers 503 for the regions
/// in the returned set while they run v2.
fn fly_project() -> (Project, Server, Arc<Mutex<HashSet<String>>>) {
    let failing: Arc<Mutex<HashSet<String>>> = Arc::default();
    let root: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let (f, r) = (failing.clone(), root.clone());
    let server = Server::start(move |req| {
        let region = req.header("fly-prefer-region").unwrap_or("").to_string();
        let sick = f.lock().unwrap().contains(&region)
            && r.lock().unwrap().as_ref().is_some_and(|root| {
                fakes::fly_images(root, APP, &region)
                    .iter()
                    .any(|i| i.ends_with(":v2"))
            });
        if sick {
            Reply::new(503, "down")
        } else {
            Reply::new(200, "ok")
        }
    });
    let mut p = Project::with_config(&config(&server.url));
    *root.lock().unwrap() = Some(p.path().to_path_buf());
    fakes::install(p.path(), "flyctl");
    let seeds: Vec<(&str, usize)> = ALL.iter().map(|r| (*r, 2)).collect();
    fakes::fly_seed(p.path(), APP, &format!("{IMAGE}:v1"), &seeds);
    p.env("SHIPGATE_VERSION", "v2");
    (p, server, failing)
}

fn version_in(p: &Project, region: &str) -> String {
    let images = fakes::fly_images(p.path(), APP, region);
    let mut tags: Vec<String> = images
        .iter()
        .map(|i| i.rsplit(':').next().unwrap().to_string())
        .collect();
    tags.sort();
    tags.dedup();
    tags.join("+")
}

/// The regions each `flyctl deploy` call named, in order.
fn deploy_calls(p: &Project) -> Vec<(String, String)> {
    fakes::calls(p.path())
        .into_iter()
        .filter(|c| c.get(1).map(String::as_str) == Some("deploy"))
        .map(|c| {
            let regions = c
                .iter()
                .skip_while(|a| *a != "--regions")
                .nth(1)
                .cloned()
                .unwrap_or_default();
            let image = c
                .iter()
                .skip_while(|a| *a != "--image")
                .nth(1)
                .cloned()
                .unwrap_or_default();
            (regions, image)
        })
        .collect()
}

#[test]
fn happy_path_deploys_every_region_in_three_calls() {
    let (p, server, _) = fly_project();
    p.run(&["deploy"]).expect(code::SUCCESS);
    for r in ALL {
        assert_eq!(version_in(&p, r), "v2", "{r}");
    }
    let v2 = format!("{IMAGE}:v2");
    assert_eq!(
        deploy_calls(&p),
        vec![
            ("lhr,nrt".into(), v2.clone()),
            ("ewr".into(), v2.clone()),
            ("ord,fra,sin,bom".into(), v2)
        ]
    );
    let first = fakes::calls(p.path())
        .into_iter()
        .find(|c| c[1] == "deploy")
        .unwrap();
    assert_eq!(
        first,
        [
            "flyctl",
            "deploy",
            "--app",
            APP,
            "--image",
            &format!("{IMAGE}:v2"),
            "--regions",
            "lhr,nrt",
            "--strategy",
            "rolling",
            "--wait-timeout",
            "300",
            "--yes"
        ]
    );
    // The health endpoint saw every region by its header.
    let seen: HashSet<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("fly-prefer-region").map(str::to_string))
        .collect();
    assert_eq!(seen.len(), 7, "{seen:?}");
}

#[test]
fn canary_trip_rolls_back_lhr_and_nrt_and_never_touches_ewr() {
    let (p, _server, failing) = fly_project();
    failing.lock().unwrap().insert("nrt".into());
    p.run(&["deploy"]).expect(code::FAILED);
    assert_eq!(version_in(&p, "lhr"), "v1");
    assert_eq!(version_in(&p, "nrt"), "v1");
    assert!(
        deploy_calls(&p)
            .iter()
            .all(|(regions, _)| !regions.contains("ewr")),
        "{:?}",
        deploy_calls(&p)
    );
    let rollback = fakes::calls(p.path())
        .into_iter()
        .filter(|c| c[1] == "deploy")
        .nth(1)
        .expect("a rollback deploy");
    assert!(
        rollback
            .windows(2)
            .any(|w| w[0] == "--strategy" && w[1] == "immediate"),
        "{rollback:?}"
    );
    assert!(rollback.contains(&format!("{IMAGE}:v1")), "{rollback:?}");
}

#[test]
fn primary_trip_rolls_back_lhr_nrt_and_ewr() {
    let (p, _server, failing) = fly_project();
    failing.lock().unwrap().insert("ewr".into());
    p.run(&["deploy"]).expect(code::FAILED);
    for r in ["lhr", "nrt", "ewr"] {
        assert_eq!(version_in(&p, r), "v1", "{r}");
    }
    for r in ["ord", "fra", "sin", "bom"] {
        assert_eq!(version_in(&p, r), "v1", "{r} was never deployed");
    }
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "rolled_back");
}

#[test]
fn full_region_failure_under_continue_is_partial_with_a_p1_audit() {
    let (p, _server, failing) = fly_project();
    failing.lock().unwrap().insert("sin".into());
    p.run(&["deploy"]).expect(code::PARTIAL);
    assert_eq!(version_in(&p, "sin"), "v2");
    for r in ["lhr", "nrt", "ewr", "ord", "fra", "bom"] {
        assert_eq!(version_in(&p, r), "v2", "{r}");
    }
    assert!(
        p.audit()
            .iter()
            .any(|a| a["priority"] == "P1" && a["message"].as_str().unwrap_or("").contains("sin")),
        "{:?}",
        p.audit()
    );
}

/// A region the platform silently did not update (under `continue`, nothing rolls it back) is
/// recorded as running what it runs: a failed gate region keeps the new version on record, the
/// skipped one its old one, and `status --live` agrees with both.
#[test]
fn a_region_left_failed_is_recorded_as_running_what_it_runs() {
    let (p, _server, failing) = fly_project();
    fakes::knob(p.path(), "skip-deploy-ord", "");
    failing.lock().unwrap().insert("sin".into());
    let r = p.run(&["--format", "json", "deploy"]).expect(code::PARTIAL);
    assert_eq!(version_in(&p, "ord"), "v1");
    assert_eq!(version_in(&p, "sin"), "v2");
    let doc = r.json();
    let row = |region: &str| {
        doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["regions"].as_array().unwrap().iter())
            .find(|x| x["region"] == region)
            .unwrap()
            .clone()
    };
    assert_eq!(row("ord")["status"], "failed", "{doc}");
    assert_eq!(row("ord")["version"], "v1", "{doc}");
    assert_eq!(row("sin")["version"], "v2", "{doc}");
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["ord"]["version"], "v1", "{status}");
    assert_eq!(status["regions"]["ord"]["status"], "failed", "{status}");
    assert_eq!(status["regions"]["sin"]["version"], "v2", "{status}");
    let live = p
        .run(&["status", "--live", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(live["ok"], true, "{live}");
}

#[test]
fn failed_rollback_exits_3_with_a_p0_audit_naming_the_regions() {
    let (p, _server, failing) = fly_project();
    failing.lock().unwrap().insert("ewr".into());
    // Once the primary's deploy call has started, every later deploy call (the rollback) fails.
    let knob_after_two_deploys = || {
        // Arm the failure once the primary's deploy has run (two deploy calls so far).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while deploy_calls(&p).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the primary never deployed"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        fakes::knob(p.path(), "fail-deploy", "");
    };
    let child = p
        .command(&["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    knob_after_two_deploys();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::ROLLBACK_FAILED), "{stderr}");
    let p0 = p
        .audit()
        .into_iter()
        .find(|a| {
            a["priority"] == "P0"
                && a["title"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ROLLBACK FAILED")
        })
        .expect("a P0 audit entry");
    let message = p0["message"].as_str().unwrap();
    for r in ["lhr", "nrt", "ewr"] {
        assert!(message.contains(r), "{r} not named in {message}");
    }
    assert_eq!(p.kind("deploy").pop().unwrap()["status"], "rollback_failed");
}

#[test]
fn fly_api_token_never_prints() {
    let (mut p, _server, _) = fly_project();
    fakes::knob(p.path(), "leak-token", "");
    p.env("FLY_API_TOKEN", "fo1_supersecrettokenvalue");
    let run = p
        .run(&["deploy", "--stage", "canary", "--format", "json"])
        .expect(code::SUCCESS);
    for text in [
        &run.stdout,
        &run.stderr,
        &p.read(".shipgate/history.jsonl"),
        &p.read(".shipgate/audit.jsonl"),
    ] {
        assert!(
            !text.contains("fo1_supersecrettokenvalue"),
            "token leaked:\n{text}"
        );
    }
}

#[test]
fn dry_run_shows_the_exact_flyctl_argv() {
    let (p, _server, _) = fly_project();
    let run = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(run.stdout.contains(&format!("$ flyctl deploy --app {APP} --image {IMAGE}:v2 --regions lhr,nrt --strategy rolling --wait-timeout 300 --yes")), "{}", run.stdout);
    // It reads what runs (the rollback targets it prints), and changes nothing.
    let calls = fakes::calls(p.path());
    assert!(
        calls.iter().all(|c| c[1] == "machines" && c[2] == "list"),
        "dry run ran more than reads: {calls:?}"
    );
    assert!(
        run.stdout.contains(&format!("on failure: $ flyctl deploy --app {APP} --image {IMAGE}:v1 --regions lhr,nrt --strategy immediate")),
        "{}",
        run.stdout
    );
}

/// QA: a platform CLI failing on a data command lost its own message. flyctl's stderr tail is
/// quoted when `machines list` fails before the deploy, and nothing is deployed.
#[test]
fn a_failing_machines_list_is_quoted_and_nothing_changes() {
    let (p, _server, _) = fly_project();
    fakes::knob(p.path(), "fail-machines-list", "");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr
            .contains("cannot read what runs in every region; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("machines list --app nettrace-dashboard --json` exited with code 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "Error: failed to fetch an image or build from source: 503 Service Unavailable"
        ),
        "flyctl's message is quoted: {}",
        run.stderr
    );
    assert!(deploy_calls(&p).is_empty());
    assert_eq!(version_in(&p, "lhr"), "v1");
}

/// The same for `flyctl releases --json`, which a rollback reads when history knows no earlier
/// version.
#[test]
fn a_failing_releases_list_is_quoted_when_a_rollback_needs_it() {
    let (p, _server, _) = fly_project();
    fakes::knob(p.path(), "fail-releases", "");
    let run = p
        .run(&["rollback", "--yes", "--region", "lhr"])
        .expect(code::USAGE);
    assert!(
        run.stderr
            .contains("lhr: the platform's release history is unavailable: `flyctl releases --app nettrace-dashboard --json` exited with code 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("503 Service Unavailable"),
        "flyctl's message is quoted: {}",
        run.stderr
    );
    assert!(deploy_calls(&p).is_empty());
}

/// One `flyctl deploy --regions lhr,nrt` rolls the canary back; when only nrt fails, lhr (whose
/// machines are back on v1) is rolled back, and only nrt needs a human.
#[test]
fn a_batched_fly_rollback_that_fails_in_one_region_marks_only_that_region() {
    let (p, _server, _) = fly_project();
    p.run(&["deploy", "--stage", "canary"])
        .expect(code::SUCCESS);
    assert_eq!(
        (version_in(&p, "lhr"), version_in(&p, "nrt")),
        ("v2".into(), "v2".into())
    );
    fakes::knob(p.path(), "fail-deploy-nrt", "1");
    let run = p
        .run(&["rollback", "--yes", "--to", "v1", "--force"])
        .expect(code::ROLLBACK_FAILED);
    assert_eq!(version_in(&p, "lhr"), "v1");
    assert_eq!(version_in(&p, "nrt"), "v2");
    // One batched call rolled the canary back.
    let rollbacks: Vec<(String, String)> = deploy_calls(&p).into_iter().skip(1).collect();
    assert_eq!(
        rollbacks,
        vec![("lhr,nrt".to_string(), format!("{IMAGE}:v1"))]
    );

    let record = p.kind("rollback").pop().expect("a rollback record");
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["to_version"]["lhr"], "v1", "{record}");
    let errors = record["errors"].as_object().expect("errors");
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["nrt"], "{record}");
    assert!(
        errors["nrt"].as_str().unwrap().contains("still runs v2"),
        "{record}"
    );

    let status = p
        .run(&["status", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    let row = |region: &str| {
        status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == region)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            row("lhr")["version"].as_str(),
            row("lhr")["status"].as_str()
        ),
        (Some("v1"), Some("rolled_back")),
        "{status}"
    );
    assert_eq!(row("nrt")["status"], "rollback_failed", "{status}");
    let attention: Vec<&str> = status["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(attention.len(), 1, "{status}");
    assert!(attention[0].starts_with("nrt: "), "{status}");

    let p0 = p
        .audit()
        .into_iter()
        .find(|a| a["priority"] == "P0")
        .expect("a P0 audit record");
    let message = p0["message"].as_str().unwrap();
    assert!(
        message.contains("rollback failed in nrt ("),
        "{message}\n{}",
        run.stderr
    );
    // lhr appears only inside the quoted argv of the batched call (`--regions lhr,nrt`).
    let unquoted: String = message
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect();
    assert!(!unquoted.contains("lhr"), "lhr is named: {message}");
}

/// Was: `flyctl machines list --json` printing `[]` made every region look empty although
/// history said what ran there: the deploy went ahead with no rollback target, and a tripped
/// gate ended in exit 3.
#[test]
fn an_empty_machines_list_falls_back_to_history_for_the_rollback_target() {
    let (mut p, _server, failing) = fly_project();
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.run(&["rollback", "--yes"]).expect(code::SUCCESS);
    assert_eq!(version_in(&p, "lhr"), "v1");
    // The reads before the next deploy's first change get `[]`.
    fakes::knob(p.path(), "empty-machines-list", &ALL.len().to_string());
    failing.lock().unwrap().insert("lhr".to_string());
    p.env("SHIPGATE_VERSION", "v2");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr
            .contains("lhr: the platform reports nothing deployed, but history says it runs v1"),
        "{}",
        run.stderr
    );
    for r in ALL {
        assert_eq!(version_in(&p, r), "v1", "{r}\n{}", run.stderr);
    }
}
