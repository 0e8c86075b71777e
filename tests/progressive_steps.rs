//! Weighted steps inside a stage (`steps`, `step_pause`): the exact argv of every step through
//! the fake kubectl and flyctl and through exec, a trip at 50 % rolling the region wholly back,
//! the dry run, and the validation of `steps`.

use crate::common::process::{signal, wait_until, SIGINT, SIGKILL};
use crate::common::steps::{kube_deployment, kube_route, kube_route_weights, kube_seed_replicas};
use crate::common::{code, fakes, Project};

/// A command gate failing while the canary of `gke-<region>` runs 2 replicas (the 50 % step of
/// 4), passing otherwise.
const TRIP_AT_HALF: &str = r#"#!/bin/sh
python3 - "$1" <<'PY'
import json, sys
s = json.load(open("fake-state/kube.json"))
d = s["contexts"]["gke-" + sys.argv[1]]["namespaces"]["prod"]["deployments"].get("api-canary")
if d and d["replicas"] == 2:
    print("error rate 9% on the canary")
    sys.exit(1)
PY
"#;

fn kube_config(traffic: &str) -> String {
    format!(
        r#"
[app]
name = "api"
[target]
adapter = "kubernetes"
image = "ghcr.io/acme/api:{{version}}"
[target.kubernetes]
deployment = "api"
container = "app"
namespace = "prod"
context = "gke-{{region}}"
{traffic}
[defaults]
command_timeout = "30s"
[[stage]]
name = "canary"
regions = ["eu"]
gates = ["health"]
steps = [25, 50, 100]
step_pause = "300ms"
timeout = "60s"
[gate.health]
type = "command"
run = ["./gate.sh", "{{region}}"]
interval = "100ms"
severity = "P0"
"#
    )
}

fn kube_project(traffic: &str, gate: &str) -> Project {
    let mut p = Project::with_config(&kube_config(traffic));
    fakes::install(p.path(), "kubectl");
    kube_seed_replicas(p.path(), "gke-eu", "api", "app=ghcr.io/acme/api:v1", 4);
    p.script("gate.sh", gate);
    p.env("SHIPGATE_VERSION", "v2");
    p
}

/// The kubectl calls after the global flags, as one string each.
fn verbs(p: &Project) -> Vec<String> {
    fakes::calls(p.path())
        .into_iter()
        .map(|c| c[5..].join(" "))
        .collect()
}

const READ: [&str; 2] = [
    "get deployment api -o json",
    "get deployment api-canary -o json",
];

#[test]
fn steps_kubernetes_replicas_exact_argv_per_step() {
    let p = kube_project("", "#!/bin/sh\nexit 0\n");
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    let expected: Vec<String> = [
        vec!["get deployment api -o json"],
        READ.to_vec(),
        vec![
            "apply -f -",
            "scale deployment/api --replicas=3",
            "rollout status deployment/api-canary --timeout=25s",
        ],
        READ.to_vec(),
        vec![
            "apply -f -",
            "scale deployment/api --replicas=2",
            "rollout status deployment/api-canary --timeout=25s",
        ],
        READ.to_vec(),
        vec![
            "set image deployment/api app=ghcr.io/acme/api:v2",
            "annotate deployment/api kubernetes.io/change-cause=shipgate deploy v2 (DEPLOY_ID) --overwrite",
            "scale deployment/api --replicas=4",
            "rollout status deployment/api --timeout=25s",
            "scale deployment/api-canary --replicas=0",
        ],
    ]
    .concat()
    .into_iter()
    .map(String::from)
    .collect();
    let id = p.kind("deploy")[0]["deploy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let got: Vec<String> = verbs(&p)
        .iter()
        .map(|v| v.replace(&id, "DEPLOY_ID"))
        .collect();
    assert_eq!(got, expected, "{}", run.stderr);
    assert_eq!(
        kube_deployment(p.path(), "gke-eu", "api"),
        Some(("ghcr.io/acme/api:v2".into(), 4))
    );
    assert_eq!(
        kube_deployment(p.path(), "gke-eu", "api-canary"),
        Some(("ghcr.io/acme/api:v2".into(), 0))
    );
    // Each step is a `started` stage record with its share.
    let weights: Vec<u64> = p
        .kind("stage")
        .iter()
        .filter(|r| r["status"] == "started")
        .map(|r| r["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [25, 50, 100]);
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["eu"]["version"], "v2");
    assert!(status["regions"]["eu"].get("weight").is_none(), "{status}");
}

#[test]
fn a_gate_tripping_at_50_percent_rolls_back_with_the_canary_at_0() {
    let p = kube_project("", TRIP_AT_HALF);
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(run.stderr.contains("tripped at step 50%"), "{}", run.stderr);
    // Wholly back on v1: the stable deployment at its 4 replicas, the canary at 0.
    assert_eq!(
        kube_deployment(p.path(), "gke-eu", "api"),
        Some(("ghcr.io/acme/api:v1".into(), 4))
    );
    assert_eq!(
        kube_deployment(p.path(), "gke-eu", "api-canary").map(|d| d.1),
        Some(0)
    );
    let v = verbs(&p);
    let after_trip = v
        .iter()
        .rposition(|c| c.starts_with("rollout status deployment/api-canary"))
        .unwrap();
    assert_eq!(
        v[after_trip + 1..]
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>(),
        [
            READ[0],
            READ[1],
            "scale deployment/api --replicas=4",
            "set image deployment/api app=ghcr.io/acme/api:v1"
        ],
        "{v:#?}"
    );
    assert_eq!(
        v.last().unwrap(),
        "scale deployment/api-canary --replicas=0"
    );
    assert!(
        !v.iter()
            .any(|c| c.contains("app=ghcr.io/acme/api:v2") && c.starts_with("set image")),
        "the 100 % step never ran: {v:#?}"
    );
    let status: serde_json::Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
    assert_eq!(status["regions"]["eu"]["version"], "v1", "{status}");
    assert_eq!(status["regions"]["eu"]["status"], "rolled_back", "{status}");
    assert!(status["regions"]["eu"].get("weight").is_none(), "{status}");
}

#[test]
fn steps_kubernetes_gateway_api_patches_the_route_weights() {
    let p = kube_project(
        "traffic = \"gateway-api\"\nroute = \"api\"",
        "#!/bin/sh\nexit 0\n",
    );
    kube_route(p.path(), "gke-eu", "api", "api", "api-canary");
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    let patches: Vec<String> = verbs(&p)
        .into_iter()
        .filter(|c| c.starts_with("patch"))
        .collect();
    let patch = |w: u32| {
        format!(
            r#"patch httproute api --type=json -p [{{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":{}}},{{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":{w}}}]"#,
            100 - w
        )
    };
    assert_eq!(patches, [patch(25), patch(50), patch(0)], "{}", run.stderr);
    assert_eq!(
        kube_route_weights(p.path(), "gke-eu", "api"),
        [("api".to_string(), 100), ("api-canary".to_string(), 0)]
    );
    // The canary ran the stable's replicas while the route split the traffic; the stable was
    // never scaled.
    assert!(!verbs(&p)
        .iter()
        .any(|c| c.starts_with("scale deployment/api ")));
    assert_eq!(
        kube_deployment(p.path(), "gke-eu", "api"),
        Some(("ghcr.io/acme/api:v2".into(), 4))
    );
}

#[test]
fn steps_fly_update_machine_subsets_with_only_machines() {
    let mut p = Project::with_config(
        r#"
[app]
name = "web"
[target]
adapter = "fly"
image = "registry.fly.io/web:{version}"
[target.fly]
app = "web"
[[stage]]
name = "canary"
regions = ["lhr"]
steps = [25, 50, 100]
step_pause = "200ms"
"#,
    );
    fakes::install(p.path(), "flyctl");
    fakes::fly_seed(
        p.path(),
        "web",
        "registry.fly.io/web:v1",
        &[("lhr", 4), ("nrt", 1)],
    );
    p.env("SHIPGATE_VERSION", "v2");
    let run = p.run(&["deploy"]).expect(code::SUCCESS);
    let deploys: Vec<Vec<String>> = fakes::calls(p.path())
        .into_iter()
        .filter(|c| c[1] == "deploy")
        .collect();
    let machines: Vec<String> = {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fakes::state_dir(p.path()).join("fly.json")).unwrap(),
        )
        .unwrap();
        let mut ids: Vec<String> = state["apps"]["web"]["machines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["region"] == "lhr")
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let target = |flag: &str, value: &str| -> Vec<String> {
        [
            "flyctl",
            "deploy",
            "--app",
            "web",
            "--image",
            "registry.fly.io/web:v2",
            flag,
            value,
            "--yes",
        ]
        .map(String::from)
        .to_vec()
    };
    assert_eq!(
        deploys,
        [
            target("--only-machines", &machines[0]),
            target("--only-machines", &machines[..2].join(",")),
            target("--regions", "lhr"),
        ],
        "{}",
        run.stderr
    );
    assert_eq!(
        fakes::fly_images(p.path(), "web", "nrt"),
        ["registry.fly.io/web:v1"]
    );
    assert!(fakes::fly_images(p.path(), "web", "lhr")
        .iter()
        .all(|i| i == "registry.fly.io/web:v2"));
}

const EXEC: &str = r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["./deploy.sh", "{region}", "{version}", "{weight}"]
current = ["./current.sh", "{region}"]
[[stage]]
name = "canary"
regions = ["lhr"]
gates = ["health"]
steps = [5, 50, 100]
step_pause = "300ms"
timeout = "60s"
[gate.health]
type = "command"
run = ["./health.sh", "{region}"]
interval = "100ms"
severity = "P0"
"#;

fn exec_project(health: &str) -> Project {
    let mut p = Project::with_config(EXEC);
    p.script(
        "deploy.sh",
        "#!/bin/sh\necho \"$1 $2 $3 env=$SHIPGATE_WEIGHT\" >> log\necho \"$2 $3\" > \"$1.state\"\n",
    );
    p.script("current.sh", "#!/bin/sh\ncut -d' ' -f1 \"$1.state\"\n");
    p.script("health.sh", health);
    p.write("lhr.state", "v1 100\n");
    p.env("SHIPGATE_VERSION", "v2");
    p
}

#[test]
fn steps_exec_pass_weight_as_placeholder_and_env() {
    let p = exec_project("#!/bin/sh\nexit 0\n");
    p.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(
        p.read("log").lines().collect::<Vec<_>>(),
        ["lhr v2 5 env=5", "lhr v2 50 env=50", "lhr v2 100 env=100"]
    );
}

#[test]
fn steps_exec_a_trip_at_50_rolls_back_with_weight_100_for_the_old_version() {
    let p = exec_project("#!/bin/sh\ngrep -qv ' 50$' \"$1.state\"\n");
    p.run(&["deploy"]).expect(code::FAILED);
    assert_eq!(
        p.read("log").lines().collect::<Vec<_>>(),
        ["lhr v2 5 env=5", "lhr v2 50 env=50", "lhr v1 100 env=100"]
    );
    assert_eq!(p.read("lhr.state"), "v1 100\n");
    let explain = p.run(&["explain", "last"]).expect(code::SUCCESS);
    assert!(
        explain.stdout.contains("stage canary: step to 5% of lhr")
            && explain.stdout.contains("stage canary: step to 50% of lhr")
            && !explain.stdout.contains("step to 100%"),
        "{}",
        explain.stdout
    );
}

#[test]
fn the_dry_run_shows_every_step_with_its_exact_argv() {
    let p = kube_project("", "#!/bin/sh\nexit 0\n");
    let run = p
        .run(&["deploy", "--dry-run", "--format", "json"])
        .expect(code::SUCCESS);
    let plan = run.json();
    let steps = plan["stages"][0]["steps"].as_array().unwrap();
    let weights: Vec<u64> = steps
        .iter()
        .map(|s| s["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [25, 50, 100]);
    let argv = |i: usize| -> Vec<String> {
        steps[i]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c.as_array().unwrap()[5..]
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    assert_eq!(
        argv(0),
        [
            "apply -f -",
            "scale deployment/api --replicas=3",
            "rollout status deployment/api-canary --timeout=25s"
        ]
    );
    assert_eq!(argv(1)[1], "scale deployment/api --replicas=2");
    assert_eq!(
        argv(2)[0],
        "set image deployment/api app=ghcr.io/acme/api:v2"
    );
    assert_eq!(argv(2)[4], "scale deployment/api-canary --replicas=0");
    // Nothing changed: only reads ran.
    assert!(
        verbs(&p).iter().all(|c| c.starts_with("get ")),
        "{:?}",
        verbs(&p)
    );
    let human = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        human.stdout.contains("step 1/3: 25% (gates watch 300ms)")
            && human.stdout.contains("step 3/3: 100% (then bakes 0s)")
            && human.stdout.contains("scale deployment/api --replicas=3"),
        "{}",
        human.stdout
    );
}

#[test]
fn bad_steps_are_config_errors_with_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        ("steps = [5, 5, 100]", "step `5` does not rise above the step before it (5)", ":12:"),
        ("steps = [10, 50]", "the last step of stage `canary` must be 100", ":12:"),
        ("steps = [0, 100]", "step `0` is not a percentage between 1 and 100", ":12:"),
        ("steps = []", "stage `canary` has empty `steps`", ":12:"),
        ("step_pause = \"1m\"", "has `step_pause` but no `steps`", ":12:"),
        (
            "steps = [50, 100]\nstep_pause = \"6m\"",
            "pauses 6m at each of its 1 steps before 100 % and bakes for 0s, but times out after 5m",
            "",
        ),
    ];
    for (stage_keys, message, at) in cases {
        let p = Project::with_config(&format!(
            r#"
[app]
name = "web"
[target]
adapter = "exec"
[target.exec]
deploy = ["./deploy.sh", "{{region}}"]
[[stage]]
name = "canary"
regions = ["lhr"]
timeout = "5m"
{stage_keys}
"#
        ));
        let run = p.run(&["validate"]).expect(code::USAGE);
        assert!(run.stderr.contains(message), "{stage_keys}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("pipeline.toml{at}")),
            "{stage_keys}: {}",
            run.stderr
        );
    }
    let p = Project::with_config(&kube_config("traffic = \"gateway-api\""));
    let run = p.run(&["validate"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("`traffic = \"gateway-api\"` needs `route`"),
        "{}",
        run.stderr
    );
}

/// A stepped stage whose pause outlasts the test: the deploy sits at its 5 % step.
fn paused_at_the_first_step() -> (Project, std::process::Child) {
    let p = exec_project("#!/bin/sh\nexit 0\n");
    p.write(
        "pipeline.toml",
        &EXEC
            .replace("\"300ms\"", "\"50s\"")
            .replace("\"60s\"", "\"200s\""),
    );
    let child = p
        .command(&["deploy"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the 5% step", || p.read("lhr.state") == "v2 5\n");
    (p, child)
}

/// A signal while a region stands at a step rolls it wholly back (the old version at 100 %),
/// as a signal anywhere else in a stage does.
#[test]
fn a_signal_during_a_step_rolls_the_region_wholly_back() {
    let (p, child) = paused_at_the_first_step();
    signal(child.id(), SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code::SIGINT), "{stderr}");
    assert_eq!(p.read("lhr.state"), "v1 100\n", "{stderr}");
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "cancelled", "{last}");
}

/// A deploy killed at a step: `status` says the region stands at that share, and `recover`
/// gives the old version the whole region again.
#[test]
fn a_deploy_killed_at_a_step_shows_its_share_and_recover_brings_the_region_back() {
    let (p, mut child) = paused_at_the_first_step();
    signal(child.id(), SIGKILL);
    child.wait().unwrap();
    let status = p.run(&["status"]).expect(code::SUCCESS);
    assert!(
        status.stdout.contains("on 5% of it"),
        "{}\n{}",
        status.stdout,
        status.stderr
    );
    p.run(&["recover", "--latest", "--yes"])
        .expect(code::SUCCESS);
    assert_eq!(p.read("lhr.state"), "v1 100\n");
}
