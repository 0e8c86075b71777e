//! `[github] deployments`: a loopback server speaking the GitHub Deployments REST endpoints
//! records what shipgate asks; the Environments page it would show must be what runs.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::common::http::{Reply, Request, Server};
use crate::common::pipeline::*;
use crate::common::process::{signal, wait_until, SIGINT};
use crate::common::{code, Project};

const TOKEN: &str = "ghs_deploymentsSecret0123456789";
const V1_SHA: &str = "1111111111111111111111111111111111111111";

/// The deployments and statuses the fake API holds.
#[derive(Default)]
struct Api {
    /// (id, environment, payload), oldest first.
    deployments: Vec<(u64, String, Value)>,
    /// Requests to fail first: (path prefix, replies to give before answering).
    fail_first: Vec<(String, Vec<Reply>)>,
}

fn github_api() -> (Server, Arc<Mutex<Api>>) {
    let api = Arc::new(Mutex::new(Api::default()));
    let state = api.clone();
    let server = Server::start(move |rq: &Request| {
        let mut api = state.lock().unwrap();
        if rq.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Reply::new(401, r#"{"message":"Bad credentials"}"#);
        }
        for (prefix, replies) in api.fail_first.iter_mut() {
            if rq.path.starts_with(prefix.as_str()) && !replies.is_empty() {
                return replies.remove(0);
            }
        }
        let path = rq.path.as_str();
        if rq.method == "POST" && path == "/repos/acme/web/deployments" {
            let body: Value = serde_json::from_str(&rq.body).unwrap();
            let id = 100 + api.deployments.len() as u64;
            api.deployments.push((
                id,
                body["environment"].as_str().unwrap().to_string(),
                body["payload"].clone(),
            ));
            return Reply::new(201, &json!({"id": id}).to_string());
        }
        if rq.method == "POST" && path.ends_with("/statuses") {
            return Reply::new(201, r#"{"id": 1}"#);
        }
        if rq.method == "GET" && path.starts_with("/repos/acme/web/deployments?") {
            let env = path
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("environment="))
                .unwrap_or_default()
                .to_string();
            let list: Vec<Value> = api
                .deployments
                .iter()
                .rev()
                .filter(|(_, e, _)| *e == env)
                .map(|(id, e, payload)| json!({"id": id, "environment": e, "payload": payload}))
                .collect();
            return Reply::new(200, &Value::Array(list).to_string());
        }
        Reply::new(404, r#"{"message":"Not Found"}"#)
    });
    (server, api)
}

fn project(config: &str, server: &Server) -> Project {
    let mut p = exec_project(config);
    p.env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_API_URL", &server.url)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_RUN_ID", "77")
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("SHIPGATE_RETRY_BASE_MS", "10");
    p
}

fn per_stage() -> String {
    format!(
        "{THREE_STAGES}\n[github]\ndeployments = \"per-stage\"\nenvironment_url = \"https://{{stage}}.example.com\"\n"
    )
}

/// The calls as `env: what` lines, in the order made ("create v2", "in_progress: …").
fn story(server: &Server, api: &Arc<Mutex<Api>>) -> Vec<String> {
    let envs: Vec<(u64, String)> = api
        .lock()
        .unwrap()
        .deployments
        .iter()
        .map(|(id, e, _)| (*id, e.clone()))
        .collect();
    let env_of = |id: u64| {
        envs.iter()
            .find(|(i, _)| *i == id)
            .map(|(_, e)| e.clone())
            .unwrap_or_default()
    };
    server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            if r.path == "/repos/acme/web/deployments" {
                format!(
                    "{}: create {}",
                    body["environment"].as_str().unwrap(),
                    body["payload"]["shipgate"]["version"].as_str().unwrap()
                )
            } else {
                let id: u64 = r.path.split('/').nth(5).unwrap().parse().unwrap();
                format!("{}: {}", env_of(id), body["state"].as_str().unwrap())
            }
        })
        .collect()
}

fn of_env(story: &[String], env: &str) -> Vec<String> {
    story
        .iter()
        .filter_map(|s| s.strip_prefix(&format!("{env}: ")).map(str::to_string))
        .collect()
}

/// The token is in every request's Authorization header and nowhere else: not in a path or a
/// body, not in what shipgate printed or wrote.
fn assert_token_only_in_authorization(server: &Server, p: &Project, outputs: &[&str]) {
    for r in server.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(!r.path.contains(TOKEN) && !r.body.contains(TOKEN), "{r:?}");
        for (k, v) in &r.headers {
            assert!(
                k.eq_ignore_ascii_case("authorization") || !v.contains(TOKEN),
                "{k}: {v}"
            );
        }
    }
    for text in outputs {
        assert!(!text.contains(TOKEN), "{text}");
    }
    for file in ["history.jsonl", "audit.jsonl", "status.json"] {
        assert!(
            !p.read(&format!(".shipgate/{file}")).contains(TOKEN),
            "{file}"
        );
    }
}

#[test]
fn a_successful_deploy_creates_a_deployment_per_stage_and_marks_each_success() {
    let (server, api) = github_api();
    let p = project(&per_stage(), &server);
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    let story = story(&server, &api);
    for env in ["production-canary", "production-primary", "production-full"] {
        assert_eq!(
            of_env(&story, env),
            ["create v2", "in_progress", "success"],
            "{env}: {story:#?}"
        );
    }
    let creates: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/repos/acme/web/deployments")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let deploy_id = p.kind("deploy")[0]["deploy_id"].clone();
    let canary = &creates[0];
    assert_eq!(canary["auto_merge"], false);
    assert_eq!(canary["required_contexts"], json!([]));
    assert_eq!(canary["ref"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(canary["payload"]["shipgate"]["deploy_id"], deploy_id);
    assert_eq!(
        canary["payload"]["shipgate"]["regions"],
        json!(["lhr", "nrt"])
    );
    let statuses: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/statuses"))
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    for s in &statuses {
        assert_eq!(s["log_url"], "https://github.com/acme/web/actions/runs/77");
        assert!(s["description"].as_str().unwrap().chars().count() <= 140);
        // Only a success inactivates the older deployments.
        assert_eq!(s["auto_inactive"], s["state"] == "success", "{s}");
    }
    assert_eq!(statuses[0]["environment_url"], "https://canary.example.com");
    // Each call is an audit record, delivered to github.
    let calls: Vec<Value> = p
        .audit()
        .into_iter()
        .filter(|a| a["context"]["github_deployment"].is_object())
        .collect();
    assert_eq!(calls.len(), 9, "{calls:#?}");
    assert!(calls.iter().all(|a| a["delivered"] == json!(["github"])));
    assert_token_only_in_authorization(&server, &p, &[&run.stdout, &run.stderr]);
}

#[test]
fn a_rolled_back_deploy_fails_its_deployments_and_restores_the_previous_version() {
    let (server, api) = github_api();
    let mut p = project(&per_stage(), &server);
    p.env("FAIL_GATE", "ewr");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    let story = story(&server, &api);
    assert_eq!(
        of_env(&story, "production-canary"),
        [
            "create v2",
            "in_progress",
            "success",
            "failure",
            "create v1",
            "success"
        ],
        "{story:#?}"
    );
    assert_eq!(
        of_env(&story, "production-primary"),
        [
            "create v2",
            "in_progress",
            "failure",
            "create v1",
            "success"
        ],
        "{story:#?}"
    );
    assert!(of_env(&story, "production-full").is_empty(), "{story:#?}");
    let failure: Value = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/statuses"))
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .find(|b| b["state"] == "failure")
        .unwrap();
    let description = failure["description"].as_str().unwrap();
    assert!(description.starts_with("rolled back: "), "{description}");
    assert!(description.contains("ewr"), "{description}");
    let restored = api.lock().unwrap().deployments[3].2.clone();
    assert_eq!(restored["shipgate"]["version"], "v1");
    assert_eq!(restored["shipgate"]["restored"], true);
    assert_token_only_in_authorization(&server, &p, &[&run.stdout, &run.stderr]);
}

#[test]
fn a_partial_deploy_per_region_fails_only_the_region_that_failed() {
    let (server, api) = github_api();
    let mut p = project(
        &format!("{THREE_STAGES}\n[github]\ndeployments = \"per-region\"\n"),
        &server,
    );
    p.env("FAIL_GATE", "fra");
    p.run(&["deploy"]).expect(code::PARTIAL);
    let story = story(&server, &api);
    for env in ["lhr", "nrt", "ewr", "ord"] {
        assert_eq!(
            of_env(&story, &format!("production-{env}")),
            ["create v2", "in_progress", "success"],
            "{env}: {story:#?}"
        );
    }
    assert_eq!(
        of_env(&story, "production-fra"),
        ["create v2", "in_progress", "failure"],
        "{story:#?}"
    );
}

#[test]
fn a_manual_rollback_fails_the_deployment_it_leaves_and_creates_the_restored_one() {
    let (server, api) = github_api();
    let p = project(&per_stage(), &server);
    let first: crate::common::Run = p
        .command(&["deploy"])
        .env("TEST_VERSION", "v1")
        .env("GITHUB_SHA", V1_SHA)
        .output()
        .unwrap()
        .into();
    first.expect(code::SUCCESS);
    p.run(&["deploy"]).expect(code::SUCCESS);
    let before = server.requests().len();
    p.run(&[
        "rollback", "--stage", "primary", "--to", "v1", "--reason", "bad", "--yes",
    ])
    .expect(code::SUCCESS);
    let later: Vec<Request> = server.requests().split_off(before);
    let calls: Vec<String> = later
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    // The v2 deploy's deployment of the primary stage: the environment's latest.
    let primary_id = api.lock().unwrap().deployments[4].0;
    assert_eq!(api.lock().unwrap().deployments[4].1, "production-primary");
    assert_eq!(
        calls,
        [
            "GET /repos/acme/web/deployments?environment=production-primary&per_page=10"
                .to_string(),
            format!("POST /repos/acme/web/deployments/{primary_id}/statuses"),
            "POST /repos/acme/web/deployments".to_string(),
            format!(
                "POST /repos/acme/web/deployments/{}/statuses",
                primary_id + 2
            ),
        ],
        "{later:#?}"
    );
    let failure: Value = serde_json::from_str(&later[1].body).unwrap();
    assert_eq!(failure["state"], "failure");
    assert_eq!(failure["description"], "rolled back: bad");
    let created: Value = serde_json::from_str(&later[2].body).unwrap();
    assert_eq!(created["payload"]["shipgate"]["version"], "v1");
    // The ref of the restored version: the commit history says deployed it, not this run's.
    assert_eq!(created["ref"], V1_SHA);
    let success: Value = serde_json::from_str(&later[3].body).unwrap();
    assert_eq!(success["state"], "success");
    assert_eq!(success["auto_inactive"], true);
}

#[test]
fn a_refusing_api_never_changes_the_deploy_outcome_and_retries_what_may_pass() {
    let (server, api) = github_api();
    let p = project(&per_stage(), &server);
    let reset = (chrono::Utc::now().timestamp()).to_string();
    api.lock().unwrap().fail_first = vec![(
        "/repos/acme/web/deployments".into(),
        vec![
            Reply::new(502, "bad gateway"),
            Reply::new(403, r#"{"message":"API rate limit exceeded"}"#)
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &reset),
        ],
    )];
    p.run(&["deploy"]).expect(code::SUCCESS);
    let story = story(&server, &api);
    // 502 and the rate limit were retried: the first create went through on the third try.
    assert_eq!(
        of_env(&story, "production-canary"),
        [
            "create v2",
            "create v2",
            "create v2",
            "in_progress",
            "success"
        ]
    );

    // An API that refuses everything: the deploy still succeeds, with a warning and audit
    // records saying what was not updated.
    let (server, _api) = github_api();
    server.set_handler(|_| Reply::new(500, "down"));
    let mut p = project(&per_stage(), &server);
    p.env("SHIPGATE_HTTP_TIMEOUT_MS", "2000");
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(
        run.stderr
            .contains("GitHub deployment `production-canary` not updated"),
        "{}",
        run.stderr
    );
    let failed: Vec<Value> = p
        .audit()
        .into_iter()
        .filter(|a| a["failed"][0]["sink"] == "github")
        .collect();
    // Each of the nine planned calls (3 creates; in_progress and success of each) is one
    // audit record saying why it was not made; a status with no deployment to post to skips.
    let calls: Vec<Value> = p
        .audit()
        .into_iter()
        .filter(|a| a["context"]["github_deployment"].is_object())
        .collect();
    assert_eq!(calls.len(), 9, "{calls:#?}");
    assert_eq!(failed.len(), 3, "{calls:#?}");
    assert!(failed[0]["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
}

#[test]
fn without_a_token_the_deploy_runs_and_says_deployments_are_not_updated() {
    let (server, _api) = github_api();
    let mut p = project(&per_stage(), &server);
    p.env("GITHUB_TOKEN", "");
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(
        run.stderr.contains("`GITHUB_TOKEN` is not set"),
        "{}",
        run.stderr
    );
    assert!(server.requests().is_empty());
}

#[test]
fn publish_event_ignores_deployments_shipgate_created() {
    let p = Project::with_config(&format!(
        "{THREE_STAGES}\n[events]\nurl = \"http://127.0.0.1:9/\"\n"
    ));
    p.write(
        "own.json",
        &json!({
            "deployment_status": {"state": "success"},
            "deployment": {"id": 7, "sha": "abc", "ref": "main",
                           "payload": {"shipgate": {"deploy_id": "D", "version": "v2"}}},
        })
        .to_string(),
    );
    let run = p
        .run(&["publish-event", "--from", "github", "--payload", "own.json"])
        .expect(code::SUCCESS);
    assert!(run.stderr.contains("ignored"), "{}", run.stderr);
    assert!(p.history().is_empty(), "nothing recorded");
}

/// A deploy killed mid-stage leaves its deployment `in_progress`; `recover` in the next run
/// fails it ("rolled back: …") and creates the restored version's deployment, `success`.
#[test]
fn recover_after_a_killed_deploy_settles_the_environment_on_the_restored_version() {
    let (server, api) = github_api();
    let mut p = project(&per_stage(), &server);
    p.env("DEPLOY_SLEEP", "1");
    let mut child = p
        .command(&["deploy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the canary's deployment is in progress", || {
        of_env(&story(&server, &api), "production-canary") == ["create v2", "in_progress"]
    });
    wait_until("both canary deploys start", || {
        p.calls().iter().filter(|c| c.starts_with("deploy")).count() == 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the canary runs v2", || {
        p.live("lhr") == "v2" && p.live("nrt") == "v2"
    });
    p.run(&["recover", "--latest", "--yes"])
        .expect(code::SUCCESS);
    let story = story(&server, &api);
    assert_eq!(
        of_env(&story, "production-canary"),
        [
            "create v2",
            "in_progress",
            "failure",
            "create v1",
            "success"
        ],
        "{story:#?}"
    );
    let deployments = api.lock().unwrap().deployments.clone();
    let restored = &deployments.last().unwrap().2["shipgate"];
    assert_eq!(restored["version"], "v1");
    assert_eq!(restored["restored"], true);
    // The page ends on what runs.
    assert_eq!((p.live("lhr"), p.live("nrt")), ("v1".into(), "v1".into()));
}

/// Was (review): a signal while shipgate waited for a hung API recorded only the call in
/// flight; the queued calls, and those of records not yet translated, were lost with the
/// process. Every call not made is an audit record saying so.
#[test]
fn an_interrupted_wait_records_every_call_not_made() {
    let hung = crate::common::http::Blackhole::start();
    let mut p = exec_project(&per_stage());
    p.env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "acme/web")
        .env("GITHUB_API_URL", &hung.url)
        .env("SHIPGATE_HTTP_TIMEOUT_MS", "120000");
    let child = p
        .command(&["deploy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the deploy's final record", || {
        p.kind("deploy").iter().any(|d| d["status"] == "success")
    });
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let calls: Vec<Value> = p
        .audit()
        .into_iter()
        .filter(|a| a["context"]["github_deployment"].is_object())
        .collect();
    assert_eq!(calls.len(), 9, "{stderr}\n{calls:#?}");
    for c in &calls {
        assert_eq!(c["delivered"], json!([]), "{c}");
        assert!(
            c["failed"][0]["error"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{c}"
        );
    }
    assert!(
        stderr.contains("9 GitHub Deployments call(s) not made"),
        "{stderr}"
    );
}

/// A rollback that fails in a region is `error` on the environment's deployment, and no
/// deployment of a restored version is created there.
#[test]
fn a_failed_rollback_is_an_error_and_restores_nothing_per_region() {
    let (server, api) = github_api();
    let mut p = project(
        &format!("{THREE_STAGES}\n[github]\ndeployments = \"per-region\"\n"),
        &server,
    );
    p.env("FAIL_GATE", "ewr").env("FAIL_ROLLBACK", "nrt");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let story = story(&server, &api);
    assert_eq!(
        of_env(&story, "production-nrt"),
        ["create v2", "in_progress", "success", "error"],
        "{story:#?}"
    );
    assert_eq!(
        of_env(&story, "production-lhr"),
        [
            "create v2",
            "in_progress",
            "success",
            "failure",
            "create v1",
            "success"
        ],
        "{story:#?}"
    );
}
