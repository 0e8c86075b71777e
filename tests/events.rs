//! `publish-event` through the real binary against a real receiver on loopback: CloudEvents,
//! both signatures checked by an independent HMAC, retries, timeouts, `--from` normalisation.

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::common::http::{Reply, Server};
use crate::common::{code, repo, Project};

const SECRET_PATH: &str = "/hooks/evt-9f8e7d6c5b4a-token";

fn config(events: &str) -> String {
    format!(
        r#"
[app]
name = "web"

[target]
adapter = "exec"

[target.exec]
deploy = ["./deploy.sh", "{{region}}", "{{version}}"]

[[stage]]
name = "canary"
regions = ["lhr"]

{events}
"#
    )
}

const CLOUDEVENTS_STANDARD: &str = r#"
[events]
url_env = "SHIPGATE_EVENTS_URL"
format = "cloudevents"
signing = "standard-webhooks"
secret_env = "SHIPGATE_EVENTS_SECRET"
source = "https://github.com/nettrace/dashboard"
"#;

const PLAIN_GITHUB: &str = r#"
[events]
url_env = "SHIPGATE_EVENTS_URL"
format = "plain"
signing = "github"
secret_env = "SHIPGATE_EVENTS_SECRET"
"#;

const PLAIN_UNSIGNED: &str = r#"
[events]
url_env = "SHIPGATE_EVENTS_URL"
format = "plain"
signing = "none"
"#;

/// A project whose events go to `url` + a secret path, with fast retries.
fn project(events: &str, url: &str) -> Project {
    let mut p = Project::with_config(&config(events));
    p.env("SHIPGATE_EVENTS_URL", &format!("{url}{SECRET_PATH}"))
        .env("SHIPGATE_RETRY_BASE_MS", "1");
    p
}

fn history(p: &Project) -> Vec<Value> {
    p.read(".shipgate/history.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("history line is JSON"))
        .collect()
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/payloads")
        .join(name)
        .display()
        .to_string()
}

/// Asserts none of `secrets` appears in the state files or the run's output.
#[track_caller]
fn assert_secrets_absent(p: &Project, run: &crate::common::Run, secrets: &[&str]) {
    let history = p.read(".shipgate/history.jsonl");
    let audit = p.read(".shipgate/audit.jsonl");
    for secret in secrets {
        for (name, text) in [
            ("history.jsonl", &history),
            ("audit.jsonl", &audit),
            ("stdout", &run.stdout),
            ("stderr", &run.stderr),
        ] {
            assert!(
                !text.contains(secret),
                "secret `{secret}` leaked into {name}:\n{text}"
            );
        }
    }
}

#[test]
fn without_an_events_section_the_event_is_recorded_with_a_note() {
    let p = Project::with_config(&config(""));
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "success",
            "--commit-sha",
            "abc123",
        ])
        .expect(code::SUCCESS);
    assert!(
        run.stderr.contains("no [events] sink is configured"),
        "{}",
        run.stderr
    );
    let h = history(&p);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["kind"], "event");
    assert_eq!(h[0]["sink"], Value::Null);
    assert_eq!(h[0]["event"]["status"], "deployed");
    assert_eq!(h[0]["event"]["metadata"]["commit_sha"], "abc123");
}

#[test]
fn cloudevents_structured_and_standard_webhooks_signature_verify() {
    let server = Server::fixed(204, "");
    let key: Vec<u8> = (0u8..24)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    let secret = format!("whsec_{b64}");
    let mut p = project(CLOUDEVENTS_STANDARD, &server.url);
    p.env("SHIPGATE_EVENTS_SECRET", &secret);
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "netlify",
            "--event-type",
            "success",
            "--branch",
            "main",
            "--deploy-id",
            "d-42",
            "--meta",
            "environment=production",
            "--format",
            "json",
        ])
        .expect(code::SUCCESS);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let rq = &requests[0];
    assert_eq!(rq.method, "POST");
    assert_eq!(rq.path, SECRET_PATH);
    assert_eq!(
        rq.header("content-type"),
        Some("application/cloudevents+json")
    );
    let body: Value = serde_json::from_str(&rq.body).unwrap();
    for attr in [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
    ] {
        assert!(
            body.get(attr).is_some(),
            "missing CloudEvents attribute {attr}: {body}"
        );
    }
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["source"], "https://github.com/nettrace/dashboard");
    assert_eq!(body["type"], "dev.shipgate.deploy.success");
    assert_eq!(body["subject"], "web");
    assert_eq!(body["datacontenttype"], "application/json");
    assert_eq!(body["time"], body["data"]["timestamp"]);
    assert_eq!(body["data"]["platform"], "netlify");
    assert_eq!(
        body["data"]["topics"],
        serde_json::json!(["deploy.netlify", "deploy.platform.success"])
    );
    assert_eq!(body["data"]["metadata"]["deploy_id"], "d-42");
    assert_eq!(body["data"]["metadata"]["environment"], "production");

    // The signature, recomputed independently.
    let id = rq.header("webhook-id").expect("webhook-id");
    let ts = rq.header("webhook-timestamp").expect("webhook-timestamp");
    assert_eq!(id, body["id"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 60);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", rq.body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(rq.header("webhook-signature"), Some(expected.as_str()));

    // Recorded with its outcome; the same id in history and on stdout.
    let out = run.json();
    assert_eq!(out["delivered"], true);
    assert_eq!(out["attempts"], 1);
    assert_eq!(out["event_id"], body["id"]);
    let h = history(&p);
    assert_eq!(h[0]["delivered"], true);
    assert_eq!(h[0]["attempts"], 1);
    assert_eq!(h[0]["event_id"], body["id"]);
    assert_eq!(h[0]["deploy_id"], "d-42");
    assert_eq!(h[0]["sink"], format!("{}/***", server.url));
    assert_secrets_absent(&p, &run, &[SECRET_PATH, &secret, &b64]);
}

#[test]
fn plain_events_carry_a_github_signature() {
    let server = Server::fixed(200, "ok");
    let secret = "It's a Secret to Everybody";
    let mut p = project(PLAIN_GITHUB, &server.url);
    p.env("SHIPGATE_EVENTS_SECRET", secret);
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "render",
            "--event-type",
            "failure",
        ])
        .expect(code::SUCCESS);
    let rq = &server.requests()[0];
    assert_eq!(rq.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&rq.body).unwrap();
    assert_eq!(body["platform"], "render");
    assert_eq!(body["status"], "failed");
    assert!(body.get("specversion").is_none());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(rq.body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(rq.header("x-hub-signature-256"), Some(expected.as_str()));
    assert!(rq.header("webhook-signature").is_none());
    assert_secrets_absent(&p, &run, &[SECRET_PATH, secret]);
}

#[test]
fn rate_limited_delivery_waits_for_retry_after_then_succeeds() {
    let server = Server::fixed(200, "");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    server.set_handler(move |_| {
        if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::new(429, "slow down").header("Retry-After", "1")
        } else {
            Reply::new(200, "")
        }
    });
    let p = project(PLAIN_UNSIGNED, &server.url);
    let start = Instant::now();
    p.run(&[
        "publish-event",
        "--platform",
        "fly",
        "--event-type",
        "start",
    ])
    .expect(code::SUCCESS);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
    let h = history(&p);
    assert_eq!(h[0]["delivered"], true);
    assert_eq!(h[0]["attempts"], 2);
}

#[test]
fn server_errors_are_retried_then_recorded_as_failed_with_exit_1() {
    let server = Server::fixed(500, "internal error");
    let p = project(PLAIN_UNSIGNED, &server.url);
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "success",
        ])
        .expect(code::FAILED);
    assert_eq!(
        server.requests().len(),
        4,
        "the first attempt and 3 retries"
    );
    assert!(run.stderr.contains("could not deliver"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    let h = history(&p);
    assert_eq!(h[0]["delivered"], false);
    assert_eq!(h[0]["attempts"], 4);
    assert!(h[0]["error"].as_str().unwrap().contains("HTTP 500"));
    assert_secrets_absent(&p, &run, &[SECRET_PATH]);
}

#[test]
fn best_effort_exits_0_with_a_warning_when_delivery_fails() {
    let server = Server::fixed(503, "");
    let p = project(PLAIN_UNSIGNED, &server.url);
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "success",
            "--best-effort",
        ])
        .expect(code::SUCCESS);
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(history(&p)[0]["delivered"], false);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::fixed(404, "");
    let p = project(PLAIN_UNSIGNED, &server.url);
    p.run(&[
        "publish-event",
        "--platform",
        "fly",
        "--event-type",
        "success",
    ])
    .expect(code::FAILED);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_receiver_that_never_answers_times_out() {
    // Accepts connections and never answers; keeps them open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut p = project(PLAIN_UNSIGNED, &url);
    p.env("SHIPGATE_HTTP_TIMEOUT_MS", "200");
    let start = Instant::now();
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "success",
        ])
        .expect(code::FAILED);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(run.stderr.contains("no answer within"), "{}", run.stderr);
    assert_eq!(history(&p)[0]["attempts"], 4);
}

#[test]
fn bad_event_type_is_a_usage_error_listing_the_valid_ones() {
    let p = Project::with_config(&config(""));
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "deployed",
        ])
        .expect(code::USAGE);
    assert!(
        run.stderr.contains("start, success, failure, progress"),
        "{}",
        run.stderr
    );
    assert!(p.read(".shipgate/history.jsonl").is_empty());
}

#[test]
fn bad_meta_is_a_usage_error() {
    let p = Project::with_config(&config(""));
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "start",
            "--meta",
            "no-equals-sign",
        ])
        .expect(code::USAGE);
    assert!(run.stderr.contains("KEY=VALUE"), "{}", run.stderr);
}

#[test]
fn a_missing_signing_secret_is_a_usage_error_and_nothing_is_sent() {
    let server = Server::fixed(200, "");
    let p = project(CLOUDEVENTS_STANDARD, &server.url);
    let run = p
        .run(&[
            "publish-event",
            "--platform",
            "fly",
            "--event-type",
            "start",
        ])
        .expect(code::USAGE);
    assert!(
        run.stderr.contains("SHIPGATE_EVENTS_SECRET"),
        "{}",
        run.stderr
    );
    assert!(server.requests().is_empty());
}

/// Each fixture, normalised: (file, --from, platform, event_type, metadata that must match).
#[test]
fn from_payload_fixtures_map_to_events() {
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "netlify-building.json",
            "netlify",
            "netlify",
            "start",
            &[("branch", "main")],
        ),
        (
            "netlify-ready.json",
            "netlify",
            "netlify",
            "success",
            &[
                ("commit_sha", "3f9c2d1a7b8e4f60a1b2c3d4e5f60718293a4b5c"),
                (
                    "deploy_url",
                    "https://65f1c2a9e3b4d10008a1b2c3--nettrace-dashboard.netlify.app",
                ),
                ("deploy_id", "65f1c2a9e3b4d10008a1b2c3"),
                ("message", "Fix latency chart tooltip"),
            ],
        ),
        (
            "netlify-error.json",
            "netlify",
            "netlify",
            "failure",
            &[("message", "Build script returned non-zero exit code: 2")],
        ),
        (
            "render-deploy-started.json",
            "render",
            "render",
            "start",
            &[("service", "nettrace-dashboard")],
        ),
        (
            "render-deploy-ended-succeeded.json",
            "render",
            "render",
            "success",
            &[("state", "succeeded")],
        ),
        (
            "render-deploy-ended-failed.json",
            "render",
            "render",
            "failure",
            &[("state", "failed")],
        ),
        (
            "github-deployment-status-pending.json",
            "github",
            "github",
            "start",
            &[("deploy_id", "1873409921")],
        ),
        (
            "github-deployment-status-in-progress.json",
            "github",
            "github",
            "progress",
            &[("branch", "main")],
        ),
        (
            "github-deployment-status-success.json",
            "github",
            "github",
            "success",
            &[
                ("deploy_url", "https://dashboard.nettrace.dev"),
                ("environment", "production"),
            ],
        ),
        (
            "github-deployment-status-failure.json",
            "github",
            "github",
            "failure",
            &[("message", "Deployment failed: health check timed out")],
        ),
        (
            "github-workflow-run-requested.json",
            "github",
            "github",
            "start",
            &[("deploy_id", "13320184412")],
        ),
        (
            "github-workflow-run-in-progress.json",
            "github",
            "github",
            "progress",
            &[],
        ),
        (
            "github-workflow-run-completed-success.json",
            "github",
            "github",
            "success",
            &[
                ("commit_sha", "3f9c2d1a7b8e4f60a1b2c3d4e5f60718293a4b5c"),
                (
                    "deploy_url",
                    "https://github.com/nettrace/dashboard/actions/runs/13320184412",
                ),
            ],
        ),
        (
            "github-workflow-run-completed-failure.json",
            "github",
            "github",
            "failure",
            &[],
        ),
    ];
    let p = Project::with_config(&config(""));
    for (file, from, platform, event_type, meta) in cases {
        let run = p
            .run(&[
                "publish-event",
                "--from",
                from,
                "--payload",
                &fixture(file),
                "--format",
                "json",
            ])
            .expect(code::SUCCESS);
        let event = &run.json()["event"];
        assert_eq!(event["platform"], *platform, "{file}");
        assert_eq!(event["event_type"], *event_type, "{file}");
        let topics = event["topics"].as_array().unwrap();
        assert_eq!(topics[0], format!("deploy.{platform}"), "{file}");
        assert_eq!(
            topics.len(),
            if *event_type == "progress" { 1 } else { 2 },
            "{file}"
        );
        for (k, v) in *meta {
            assert_eq!(event["metadata"][k], *v, "{file}: metadata.{k}");
        }
    }
}

#[test]
fn explicit_flags_override_the_payload() {
    let p = Project::with_config(&config(""));
    let run = p
        .run(&[
            "publish-event",
            "--from",
            "netlify",
            "--payload",
            &fixture("netlify-ready.json"),
            "--branch",
            "release",
            "--platform",
            "netlify-eu",
            "--status",
            "live",
            "--format",
            "json",
        ])
        .expect(code::SUCCESS);
    let e = &run.json()["event"];
    assert_eq!(e["platform"], "netlify-eu");
    assert_eq!(e["status"], "live");
    assert_eq!(e["metadata"]["branch"], "release");
    assert_eq!(
        e["metadata"]["commit_sha"],
        "3f9c2d1a7b8e4f60a1b2c3d4e5f60718293a4b5c"
    );
}

#[test]
fn a_payload_read_from_stdin() {
    use std::io::Write;
    let p = Project::with_config(&config(""));
    let mut child = p
        .command(&[
            "publish-event",
            "--from",
            "render",
            "--payload",
            "-",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(fixture("render-deploy-ended-succeeded.json")).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let run: crate::common::Run = child.wait_with_output().unwrap().into();
    let run = run.expect(code::SUCCESS);
    assert_eq!(run.json()["event"]["event_type"], "success");
}

#[test]
fn a_payload_that_is_not_what_from_says_is_a_usage_error() {
    let p = Project::with_config(&config(""));
    let run = p
        .run(&[
            "publish-event",
            "--from",
            "render",
            "--payload",
            &fixture("netlify-ready.json"),
        ])
        .expect(code::USAGE);
    assert!(
        run.stderr.contains("not a Render webhook"),
        "{}",
        run.stderr
    );
    let path = p.write("junk.json", "this is not json");
    let run = p
        .run(&[
            "publish-event",
            "--from",
            "github",
            "--payload",
            path.to_str().unwrap(),
        ])
        .expect(code::USAGE);
    assert!(run.stderr.contains("not JSON"), "{}", run.stderr);
    let run = p
        .run(&[
            "publish-event",
            "--from",
            "github",
            "--payload",
            &fixture("render-deploy-started.json"),
        ])
        .expect(code::USAGE);
    assert!(run.stderr.contains("neither"), "{}", run.stderr);
    assert!(p.read(".shipgate/history.jsonl").is_empty());
}

/// The helper the deploy engine calls: never an error, a warning when delivery fails, the
/// event recorded either way, `platform` = the adapter.
mod deploy_helper {
    use super::*;
    use shipgate::events::{publish_deploy_event, EventType};
    use shipgate::ledger::Ledger;

    fn setup(events: &str) -> (tempfile::TempDir, shipgate::config::Config, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".shipgate");
        let config = shipgate::config::parse(
            &dir.path().join("pipeline.toml"),
            &config(events),
            Some(&state),
        )
        .unwrap();
        let ledger = Ledger::open(&state).unwrap();
        (dir, config, ledger)
    }

    fn records(dir: &tempfile::TempDir) -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(".shipgate/history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn literal(url: &str, extra: &str) -> String {
        format!("[events]\nurl = \"{url}/events\"\nformat = \"plain\"\n{extra}")
    }

    #[test]
    fn does_nothing_without_an_events_section() {
        let (dir, config, ledger) = setup("");
        let w = publish_deploy_event(
            &config,
            &ledger,
            EventType::Start,
            "d1",
            "v1",
            Default::default(),
        );
        assert_eq!(w, None);
        assert!(records(&dir).is_empty());
    }

    #[test]
    fn publishes_with_the_adapter_as_platform() {
        let server = Server::fixed(200, "");
        let (dir, config, ledger) = setup(&literal(&server.url, ""));
        let mut extra = serde_json::Map::new();
        extra.insert("commit_sha".into(), "abc123".into());
        let w = publish_deploy_event(&config, &ledger, EventType::Success, "d1", "v1", extra);
        assert_eq!(w, None);
        let body: Value = serde_json::from_str(&server.requests()[0].body).unwrap();
        assert_eq!(body["platform"], "exec");
        assert_eq!(
            body["topics"],
            serde_json::json!(["deploy.exec", "deploy.platform.success"])
        );
        assert_eq!(body["metadata"]["version"], "v1");
        assert_eq!(body["metadata"]["deploy_id"], "d1");
        assert_eq!(body["metadata"]["commit_sha"], "abc123");
        assert_eq!(records(&dir)[0]["delivered"], true);
    }

    #[test]
    fn a_refused_event_is_a_warning_and_recorded() {
        let server = Server::fixed(404, "");
        let (dir, config, ledger) = setup(&literal(&server.url, ""));
        let w = publish_deploy_event(
            &config,
            &ledger,
            EventType::Failure,
            "d1",
            "v1",
            Default::default(),
        )
        .expect("a warning");
        assert!(w.contains("404"), "{w}");
        let r = records(&dir);
        assert_eq!(r[0]["delivered"], false);
        assert_eq!(r[0]["deploy_id"], "d1");
    }

    #[test]
    fn a_missing_signing_secret_is_a_warning_and_recorded() {
        let server = Server::fixed(200, "");
        let (dir, config, ledger) = setup(&literal(
            &server.url,
            "signing = \"github\"\nsecret_env = \"SHIPGATE_TEST_SECRET_THAT_IS_NEVER_SET\"",
        ));
        let w = publish_deploy_event(
            &config,
            &ledger,
            EventType::Start,
            "d1",
            "v1",
            Default::default(),
        )
        .expect("a warning");
        assert!(w.contains("SHIPGATE_TEST_SECRET_THAT_IS_NEVER_SET"), "{w}");
        assert!(server.requests().is_empty());
        let r = records(&dir);
        assert_eq!(r[0]["delivered"], false);
        assert!(r[0]["error"].as_str().unwrap().contains("not set"));
    }
}
