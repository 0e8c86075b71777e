//! The fly, kubernetes and exec adapters against the fake CLIs of `tests/fakes/` (and the real
//! `kubectl` for its flag parsing). `deploy` is wired separately; these drive the adapters
//! through the library, with the fakes named by absolute path in the config.

use crate::common::fakes;

use std::time::{Duration, Instant};

use shipgate::adapters::{self, Adapter, Live, RegionResult, RunCtx};
use shipgate::config::placeholder::Vars;
use shipgate::exec::{Cancel, CommandSpec};

use crate::common::Project;

fn adapter(p: &Project, config: &str) -> Box<dyn Adapter> {
    let path = p.write("pipeline.toml", config);
    let config = shipgate::config::parse(&path, config, None).expect("config");
    adapters::build(&config).expect("adapter")
}

fn ctx<'a>(p: &Project, cancel: &'a Cancel, timeout: Duration) -> RunCtx<'a> {
    RunCtx {
        cancel,
        command_timeout: timeout,
        cwd: p.path().to_path_buf(),
        on_line: None,
        journal: None,
    }
}

fn vars(version: &str) -> Vars {
    Vars::new()
        .with("app", "web")
        .with("version", version)
        .with("stage", "canary")
        .with("deploy_id", "01JTEST")
}

fn regions(rs: &[&str]) -> Vec<String> {
    rs.iter().map(|r| r.to_string()).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn assert_ok(results: &[RegionResult]) {
    for (r, res) in results {
        if let Err(e) = res {
            panic!("region {r} failed: {}", e.render(false));
        }
    }
}

fn error_of<'a>(results: &'a [RegionResult], region: &str) -> &'a shipgate::error::Error {
    let (_, res) = results.iter().find(|(r, _)| r == region).expect("region");
    res.as_ref().expect_err("expected the region to fail")
}

// ---------------------------------------------------------------------------------------------
// fly

fn fly_project() -> (Project, Box<dyn Adapter>) {
    let p = Project::new();
    let bin = fakes::install(p.path(), "flyctl");
    let config = format!(
        r#"
[app]
name = "web"
[target]
adapter = "fly"
image = "registry.fly.io/web:{{version}}"
[target.fly]
app = "web-prod"
strategy = "rolling"
wait_timeout = "2m"
bin = "{}"
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
"#,
        bin.display()
    );
    let a = adapter(&p, &config);
    (p, a)
}

fn fly_argv(rest: &[&str]) -> Vec<String> {
    strs(&[&["flyctl"], rest].concat())
}

#[test]
fn fly_deploys_a_stage_in_one_call_and_reads_each_region() {
    let (p, fly) = fly_project();
    fakes::fly_seed(
        p.path(),
        "web-prod",
        "registry.fly.io/web:v1",
        &[("lhr", 2), ("nrt", 1)],
    );
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    assert!(fly.batches_regions());

    assert_eq!(
        fly.current("lhr", &vars("v2"), &ctx).unwrap(),
        Live::Version("v1".into())
    );
    assert_eq!(fly.current("sin", &vars("v2"), &ctx).unwrap(), Live::Absent);
    let results = fly.deploy(&regions(&["lhr", "nrt"]), &vars("v2"), &ctx);
    assert_ok(&results);
    assert_eq!(results.len(), 2);
    assert_eq!(
        fly.current("nrt", &vars("v2"), &ctx).unwrap(),
        Live::Version("v2".into())
    );
    assert_eq!(
        fakes::fly_images(p.path(), "web-prod", "lhr"),
        ["registry.fly.io/web:v2", "registry.fly.io/web:v2"]
    );
    let list = fly_argv(&["machines", "list", "--app", "web-prod", "--json"]);
    assert_eq!(
        fakes::calls(p.path()),
        vec![
            list.clone(),
            list.clone(),
            fly_argv(&[
                "deploy",
                "--app",
                "web-prod",
                "--image",
                "registry.fly.io/web:v2",
                "--regions",
                "lhr,nrt",
                "--strategy",
                "rolling",
                "--wait-timeout",
                "120",
                "--yes",
            ]),
            list.clone(),
            list,
        ]
    );
    assert_eq!(
        fly.release_history("lhr", &vars("v2"), &ctx).unwrap(),
        ["v2", "v1"]
    );
}

#[test]
fn fly_a_region_left_on_mixed_or_old_machines_fails_alone() {
    let (p, fly) = fly_project();
    fakes::fly_seed(
        p.path(),
        "web-prod",
        "registry.fly.io/web:v1",
        &[("lhr", 2), ("nrt", 2), ("sin", 1)],
    );
    fakes::knob(p.path(), "partial-deploy-nrt", "");
    fakes::knob(p.path(), "skip-deploy-sin", "");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    let results = fly.deploy(&regions(&["lhr", "nrt", "sin"]), &vars("v2"), &ctx);
    assert!(results[0].1.is_ok());
    assert_eq!(
        error_of(&results, "nrt").message,
        "region nrt runs mixed versions (v1, v2) after deploying v2"
    );
    assert_eq!(
        error_of(&results, "sin").message,
        "region sin still runs v1 after deploying v2"
    );
    assert_eq!(
        fly.current("nrt", &vars("v2"), &ctx).unwrap(),
        Live::Mixed(strs(&["v1", "v2"]))
    );
}

/// A failed `flyctl deploy --regions lhr,nrt` is judged per region from the machines: the
/// region it updated is fine, the one it did not gets the call's error (argv, stderr tail) and
/// what it still runs. A call that changed nothing fails every region.
#[test]
fn fly_a_failed_deploy_fails_the_regions_it_did_not_update_with_the_stderr_tail() {
    let (p, fly) = fly_project();
    fakes::fly_seed(
        p.path(),
        "web-prod",
        "registry.fly.io/web:v1",
        &[("lhr", 1), ("nrt", 1)],
    );
    fakes::knob(p.path(), "fail-deploy-nrt", "1");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    let results = fly.deploy(&regions(&["lhr", "nrt"]), &vars("v2"), &ctx);
    assert!(results[0].1.is_ok(), "lhr runs v2: {:?}", results[0].1);
    let e = error_of(&results, "nrt");
    assert!(
        e.message.contains("flyctl deploy --app web-prod"),
        "{}",
        e.message
    );
    assert!(e.message.contains("exited with code 1"), "{}", e.message);
    assert!(
        e.detail
            .as_deref()
            .unwrap_or_default()
            .contains("failed to update machines in region nrt"),
        "{:?}",
        e.detail
    );
    assert!(
        e.to_string()
            .ends_with("region nrt still runs v1 after deploying v2"),
        "{e}"
    );
    // the knob was used up: the same deploy now succeeds
    assert_ok(&fly.deploy(&regions(&["lhr", "nrt"]), &vars("v2"), &ctx));

    // A call that fails before changing anything fails every region, each saying what it runs.
    fakes::knob(p.path(), "fail-deploy", "1");
    let results = fly.deploy(&regions(&["lhr", "nrt"]), &vars("v3"), &ctx);
    for region in ["lhr", "nrt"] {
        let e = error_of(&results, region);
        assert!(e.message.contains("exited with code 1"), "{}", e.message);
        assert!(
            e.to_string()
                .ends_with(&format!("region {region} still runs v2 after deploying v3")),
            "{e}"
        );
    }
}

#[test]
fn fly_rollback_deploys_the_previous_image_immediately() {
    let (p, fly) = fly_project();
    fakes::fly_seed(
        p.path(),
        "web-prod",
        "registry.fly.io/web:v1",
        &[("lhr", 2)],
    );
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    assert_ok(&fly.deploy(&regions(&["lhr"]), &vars("v2"), &ctx));
    fakes::clear_calls(p.path());

    let results = fly.rollback(&regions(&["lhr"]), Some("v1"), &vars("v2"), &ctx);
    assert_ok(&results);
    assert_eq!(
        fly.current("lhr", &vars("v2"), &ctx).unwrap(),
        Live::Version("v1".into())
    );
    assert_eq!(
        fakes::calls(p.path())[0],
        fly_argv(&[
            "deploy",
            "--app",
            "web-prod",
            "--image",
            "registry.fly.io/web:v1",
            "--regions",
            "lhr",
            "--strategy",
            "immediate",
            "--wait-timeout",
            "120",
            "--yes",
        ])
    );

    fakes::clear_calls(p.path());
    let results = fly.rollback(&regions(&["lhr"]), None, &vars("v2"), &ctx);
    assert!(error_of(&results, "lhr")
        .message
        .contains("no previous version known"));
    assert!(fakes::calls(p.path()).is_empty());
}

#[test]
fn fly_noise_around_the_json_is_tolerated() {
    let (p, fly) = fly_project();
    fakes::fly_seed(
        p.path(),
        "web-prod",
        "registry.fly.io/web:v1",
        &[("lhr", 1)],
    );
    fakes::knob(p.path(), "noise", "");
    let lines = std::sync::Mutex::new(Vec::new());
    let sink = |_: shipgate::exec::Stream, l: &str| lines.lock().unwrap().push(l.to_string());
    let cancel = Cancel::new();
    let mut ctx = ctx(&p, &cancel, Duration::from_secs(20));
    ctx.on_line = Some(&sink);
    assert_eq!(
        fly.current("lhr", &vars("v2"), &ctx).unwrap(),
        Live::Version("v1".into())
    );
    assert_eq!(
        fly.release_history("lhr", &vars("v2"), &ctx).unwrap(),
        ["v1"]
    );
    let lines = lines.into_inner().unwrap();
    assert!(lines.iter().any(|l| l.contains("Update available")));
    // a data command's stdout is parsed, not logged line by line
    assert!(!lines
        .iter()
        .any(|l| l.contains("newer version") || l.contains("image_ref")));
}

#[test]
fn fly_a_hanging_deploy_times_out() {
    let (p, fly) = fly_project();
    fakes::knob(p.path(), "hang-deploy", "");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(1));
    let t = Instant::now();
    let results = fly.deploy(&regions(&["lhr", "nrt"]), &vars("v2"), &ctx);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let e = error_of(&results, "nrt");
    assert!(e.message.contains("timed out after 1s"), "{}", e.message);
    assert!(e
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("waiting for the API"));
}

#[test]
fn fly_a_missing_binary_names_the_config_key() {
    let p = Project::new();
    let fly = adapter(
        &p,
        r#"
[app]
name = "web"
[target]
adapter = "fly"
image = "registry.fly.io/web:{version}"
[target.fly]
app = "web-prod"
bin = "/nonexistent/flyctl"
[[stage]]
name = "canary"
regions = ["lhr"]
"#,
    );
    let cancel = Cancel::new();
    let e = fly
        .current(
            "lhr",
            &vars("v2"),
            &ctx(&p, &cancel, Duration::from_secs(5)),
        )
        .unwrap_err();
    assert_eq!(e.exit_code(), crate::common::code::USAGE);
    assert!(e.hint.unwrap().contains("`target.fly.bin`"));
}

// ---------------------------------------------------------------------------------------------
// kubernetes

fn kube_project(extra: &str) -> (Project, Box<dyn Adapter>) {
    let p = Project::new();
    let bin = fakes::install(p.path(), "kubectl");
    let config = format!(
        r#"
[app]
name = "web"
[target]
adapter = "kubernetes"
image = "ghcr.io/acme/web:{{version}}"
[target.kubernetes]
deployment = "api"
container = "app"
namespace = "prod"
context = "gke-{{region}}"
bin = "{}"
{extra}
[[stage]]
name = "canary"
regions = ["eu", "us"]
"#,
        bin.display()
    );
    let a = adapter(&p, &config);
    (p, a)
}

fn kube_argv(context: &str, rest: &[&str]) -> Vec<String> {
    strs(
        &[
            &["kubectl", "--context", context, "--namespace", "prod"],
            rest,
        ]
        .concat(),
    )
}

fn calls_for(p: &Project, context: &str) -> Vec<Vec<String>> {
    fakes::calls(p.path())
        .into_iter()
        .filter(|c| c.get(2).map(String::as_str) == Some(context))
        .collect()
}

#[test]
fn kubernetes_deploys_each_context_and_reads_it_back() {
    let (p, k) = kube_project("");
    for region in ["eu", "us"] {
        fakes::kube_seed(
            p.path(),
            &format!("gke-{region}"),
            "prod",
            Some(("api", "app", "ghcr.io/acme/web:v1")),
        );
    }
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(30));
    assert!(!k.batches_regions());
    assert_eq!(
        k.current("eu", &vars("v2"), &ctx).unwrap(),
        Live::Version("v1".into())
    );
    fakes::clear_calls(p.path());

    assert_ok(&k.deploy(&regions(&["eu", "us"]), &vars("v2"), &ctx));
    for context in ["gke-eu", "gke-us"] {
        assert_eq!(
            calls_for(&p, context),
            vec![
                kube_argv(
                    context,
                    &["set", "image", "deployment/api", "app=ghcr.io/acme/web:v2"]
                ),
                kube_argv(
                    context,
                    &[
                        "annotate",
                        "deployment/api",
                        "kubernetes.io/change-cause=shipgate deploy v2 (01JTEST)",
                        "--overwrite",
                    ]
                ),
                kube_argv(
                    context,
                    &["rollout", "status", "deployment/api", "--timeout=25s"]
                ),
            ]
        );
        assert_eq!(
            fakes::kube_image(p.path(), context, "prod", "api", "app"),
            "ghcr.io/acme/web:v2"
        );
    }
    assert_eq!(
        k.current("us", &vars("v2"), &ctx).unwrap(),
        Live::Version("v2".into())
    );
    fakes::clear_calls(p.path());
    assert_eq!(
        k.release_history("eu", &vars("v2"), &ctx).unwrap(),
        ["v2", "v1"]
    );
    assert_eq!(
        fakes::calls(p.path()),
        vec![
            kube_argv("gke-eu", &["get", "deployment", "api", "-o", "json"]),
            kube_argv(
                "gke-eu",
                &["get", "replicasets", "-l", "app=api", "-o", "json"]
            ),
        ]
    );
}

#[test]
fn kubernetes_a_missing_deployment_is_absent_and_a_missing_context_an_error() {
    let (p, k) = kube_project("");
    fakes::kube_seed(p.path(), "gke-eu", "prod", None);
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(30));
    assert_eq!(k.current("eu", &vars("v2"), &ctx).unwrap(), Live::Absent);
    assert!(k
        .release_history("eu", &vars("v2"), &ctx)
        .unwrap()
        .is_empty());
    let e = k.current("us", &vars("v2"), &ctx).unwrap_err();
    assert!(
        e.detail
            .unwrap()
            .contains("context \"gke-us\" does not exist"),
        "{}",
        e.message
    );
}

#[test]
fn kubernetes_rollback_sets_the_old_image_or_undoes() {
    let (p, k) = kube_project("");
    fakes::kube_seed(
        p.path(),
        "gke-eu",
        "prod",
        Some(("api", "app", "ghcr.io/acme/web:v1")),
    );
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(30));
    assert_ok(&k.deploy(&regions(&["eu"]), &vars("v2"), &ctx));
    fakes::clear_calls(p.path());

    assert_ok(&k.rollback(&regions(&["eu"]), Some("v1"), &vars("v2"), &ctx));
    assert_eq!(
        k.current("eu", &vars("v2"), &ctx).unwrap(),
        Live::Version("v1".into())
    );
    let calls = fakes::calls(p.path());
    assert_eq!(
        calls[0],
        kube_argv(
            "gke-eu",
            &["set", "image", "deployment/api", "app=ghcr.io/acme/web:v1"]
        )
    );
    assert_eq!(
        calls[1][7],
        "kubernetes.io/change-cause=shipgate rollback to v1 (01JTEST)"
    );

    // without a known version, the platform undoes its last change (back to v2 here)
    fakes::clear_calls(p.path());
    assert_ok(&k.rollback(&regions(&["eu"]), None, &vars("v1"), &ctx));
    assert_eq!(
        fakes::calls(p.path()),
        vec![
            kube_argv("gke-eu", &["rollout", "undo", "deployment/api"]),
            kube_argv(
                "gke-eu",
                &["rollout", "status", "deployment/api", "--timeout=25s"]
            ),
        ]
    );
    assert_eq!(
        fakes::kube_image(p.path(), "gke-eu", "prod", "api", "app"),
        "ghcr.io/acme/web:v2"
    );
}

#[test]
fn kubernetes_a_rollout_in_progress_is_mixed() {
    let (p, k) = kube_project("");
    fakes::kube_seed(
        p.path(),
        "gke-eu",
        "prod",
        Some(("api", "app", "ghcr.io/acme/web:v1")),
    );
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(30));
    assert_ok(&k.deploy(&regions(&["eu"]), &vars("v2"), &ctx));
    fakes::knob(p.path(), "rolling-gke-eu", "");
    assert_eq!(
        k.current("eu", &vars("v2"), &ctx).unwrap(),
        Live::Mixed(strs(&["v1", "v2"]))
    );
}

#[test]
fn kubernetes_a_failed_rollout_fails_only_its_region() {
    let (p, k) = kube_project("");
    for region in ["eu", "us"] {
        fakes::kube_seed(
            p.path(),
            &format!("gke-{region}"),
            "prod",
            Some(("api", "app", "ghcr.io/acme/web:v1")),
        );
    }
    fakes::knob(p.path(), "fail-rollout-status-gke-us", "");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(30));
    let results = k.deploy(&regions(&["eu", "us"]), &vars("v2"), &ctx);
    assert!(results[0].1.is_ok());
    let e = error_of(&results, "us");
    assert!(
        e.message.contains("rollout status deployment/api"),
        "{}",
        e.message
    );
    assert!(
        e.detail
            .as_deref()
            .unwrap()
            .contains("exceeded its progress deadline"),
        "{:?}",
        e.detail
    );
}

#[test]
fn kubernetes_a_hanging_rollout_times_out() {
    let (p, k) = kube_project("");
    fakes::kube_seed(
        p.path(),
        "gke-eu",
        "prod",
        Some(("api", "app", "ghcr.io/acme/web:v1")),
    );
    fakes::knob(p.path(), "hang-rollout-status-gke-eu", "");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(2));
    let t = Instant::now();
    let results = k.deploy(&regions(&["eu"]), &vars("v2"), &ctx);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(error_of(&results, "eu")
        .message
        .contains("timed out after 2s"));
}

/// Contract: the real kubectl accepts every argv form the adapter builds. Against a cluster on
/// a closed port, each must fail on the connection, never on flag parsing.
#[test]
fn kubernetes_real_kubectl_accepts_our_argv() {
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("skipping: /usr/bin/kubectl is not installed");
        return;
    }
    let p = Project::new();
    let kubeconfig = p.write(
        "kubeconfig",
        r#"apiVersion: v1
kind: Config
clusters:
- name: closed
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
contexts:
- name: gke-eu
  context: {cluster: closed, user: nobody, namespace: default}
current-context: gke-eu
users:
- name: nobody
  user: {token: not-a-real-token}
"#,
    );
    let k = adapter(
        &p,
        r#"
[app]
name = "web"
[target]
adapter = "kubernetes"
image = "ghcr.io/acme/web:{version}"
[target.kubernetes]
deployment = "api"
container = "app"
namespace = "prod"
context = "gke-{region}"
bin = "/usr/bin/kubectl"
[[stage]]
name = "canary"
regions = ["eu"]
"#,
    );
    let eu = regions(&["eu"]);
    let timeout = Duration::from_secs(20);
    let mut specs: Vec<CommandSpec> = k.deploy_commands(&eu, &vars("v2"), timeout);
    specs.extend(k.rollback_commands(&eu, Some("v1"), &vars("v2"), timeout));
    specs.extend(k.rollback_commands(&eu, None, &vars("v2"), timeout));
    let k8s = shipgate::adapters::kubernetes::Kubernetes::new(
        &shipgate::config::parse(
            &p.path().join("pipeline.toml"),
            &p.read("pipeline.toml"),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    specs.push(k8s.get_deployment("eu", &vars("v2"), timeout));
    specs.push(k8s.get_replicasets("eu", &vars("v2"), "app=api", timeout));
    assert_eq!(specs.len(), 10);
    // Stepped stages: the canary's apply (manifest on stdin), the scales, the route patch.
    let stable: serde_json::Value = serde_json::json!({"metadata": {"name": "api", "namespace": "prod"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/web:v1"}]}}}});
    let route = serde_json::json!({"spec": {"rules": [{"backendRefs": [
        {"name": "api", "port": 80, "weight": 100}, {"name": "api-canary", "port": 80, "weight": 0}]}]}});
    let basis = shipgate::adapters::steps::StepBasis {
        replicas: Some(4),
        stable: Some(stable),
        canary: Some(serde_json::Value::Null),
        route: Some(route),
        read: true,
        machines: Vec::new(),
    };
    let stepped = |w: &str| vars("v2").with("weight", w);
    let before = specs.len();
    for traffic in ["", "traffic = \"gateway-api\"\nroute = \"api\""] {
        let gk = adapter(
            &p,
            &p.read("pipeline.toml").replace(
                "bin = \"/usr/bin/kubectl\"",
                &format!("bin = \"/usr/bin/kubectl\"\n{traffic}"),
            ),
        );
        for w in ["25", "100"] {
            specs.extend(gk.step_commands("eu", &stepped(w), &basis, timeout));
        }
        // (a stepped rollback runs the same verbs: scale, set image, patch)
    }
    assert!(specs[before..]
        .iter()
        .any(|s| s.argv.contains(&"apply".to_string()) && s.stdin.is_some()));
    assert!(specs[before..]
        .iter()
        .any(|s| s.argv.contains(&"httproute".to_string())));
    for mut spec in specs {
        spec.env
            .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        spec.env
            .push(("HOME".into(), p.path().display().to_string()));
        let out = shipgate::exec::run(&spec, &Cancel::new(), None).unwrap();
        assert!(
            !out.success(),
            "`{}` succeeded against a closed port",
            spec.display()
        );
        let err = out.stderr_tail.to_lowercase();
        assert!(
            err.contains("refused")
                && !err.contains("unknown flag")
                && !err.contains("unknown command"),
            "`{}` did not fail on the connection:\n{}",
            spec.display(),
            out.stderr_tail
        );
    }
}

// ---------------------------------------------------------------------------------------------
// exec

fn exec_project(extra: &str) -> (Project, Box<dyn Adapter>) {
    let p = Project::new();
    p.write("state/.keep", "");
    // deploy.sh REGION VERSION: records the version per region and the argv and env it got.
    p.script(
        "scripts/deploy.sh",
        r#"#!/bin/sh
set -e
mkdir -p state
echo "deploy $* prev=$SHIPGATE_PREVIOUS_VERSION env_region=$SHIPGATE_REGION image=$SHIPGATE_IMAGE id=$SHIPGATE_DEPLOY_ID" >> state/log
if [ -e "state/fail-$1" ]; then echo "deploy to $1 refused: quota exceeded" >&2; exit 3; fi
echo "$2" > "state/$1"
echo "deployed $2 to $1"
"#,
    );
    p.script(
        "scripts/current.sh",
        "#!/bin/sh\necho \"current $*\" >> state/log\ncat \"state/$1\" 2>/dev/null || true\n",
    );
    let config = format!(
        r#"
[app]
name = "web"
[target]
adapter = "exec"
image = "r.io/web:{{version}}"
[target.exec]
deploy = ["./scripts/deploy.sh", "{{region}}", "{{version}}"]
current = ["./scripts/current.sh", "{{region}}"]
{extra}
[[stage]]
name = "canary"
regions = ["eu", "us"]
"#
    );
    let a = adapter(&p, &config);
    (p, a)
}

#[test]
fn exec_deploys_reads_and_rolls_back_with_placeholders_and_env() {
    let (p, e) = exec_project("");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    assert!(!e.batches_regions());
    assert_eq!(e.current("eu", &vars("v2"), &ctx).unwrap(), Live::Absent);
    assert_ok(&e.deploy(
        &regions(&["eu"]),
        &vars("v2").with("previous_version", ""),
        &ctx,
    ));
    assert_eq!(
        e.current("eu", &vars("v2"), &ctx).unwrap(),
        Live::Version("v2".into())
    );
    assert_ok(&e.deploy(
        &regions(&["eu"]),
        &vars("v3").with("previous_version", "v2"),
        &ctx,
    ));
    assert_ok(&e.rollback(&regions(&["eu"]), Some("v2"), &vars("v3"), &ctx));
    assert_eq!(
        e.current("eu", &vars("v3"), &ctx).unwrap(),
        Live::Version("v2".into())
    );
    assert_eq!(
        p.read("state/log").lines().collect::<Vec<_>>(),
        [
            "current eu",
            "deploy eu v2 prev= env_region=eu image=r.io/web:v2 id=01JTEST",
            "current eu",
            "deploy eu v3 prev=v2 env_region=eu image=r.io/web:v3 id=01JTEST",
            "deploy eu v2 prev=v3 env_region=eu image=r.io/web:v2 id=01JTEST",
            "current eu",
        ]
    );
    let results = e.rollback(&regions(&["eu"]), None, &vars("v3"), &ctx);
    assert!(error_of(&results, "eu")
        .message
        .contains("no previous version known"));
    assert!(e
        .release_history("eu", &vars("v3"), &ctx)
        .unwrap()
        .is_empty());
}

#[test]
fn exec_a_rollback_template_is_used_when_given() {
    let (p, e) = exec_project(
        r#"rollback = ["./scripts/deploy.sh", "{region}", "{previous_version}-undo"]"#,
    );
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    assert_ok(&e.rollback(&regions(&["us"]), Some("v1"), &vars("v2"), &ctx));
    assert_eq!(
        e.current("us", &vars("v2"), &ctx).unwrap(),
        Live::Version("v2-undo".into())
    );
}

#[test]
fn exec_a_failing_region_fails_alone_with_its_stderr() {
    let (p, e) = exec_project("");
    p.write("state/fail-us", "");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(20));
    let results = e.deploy(&regions(&["eu", "us"]), &vars("v2"), &ctx);
    assert!(results[0].1.is_ok());
    let err = error_of(&results, "us");
    assert_eq!(
        err.message,
        "`./scripts/deploy.sh us v2` exited with code 3"
    );
    assert!(err
        .detail
        .as_deref()
        .unwrap()
        .contains("deploy to us refused: quota exceeded"));
}

#[test]
fn exec_cancel_stops_a_running_deploy() {
    let (p, e) = exec_project("");
    p.script("scripts/deploy.sh", "#!/bin/sh\nsleep 100\n");
    let cancel = Cancel::new();
    let ctx = ctx(&p, &cancel, Duration::from_secs(60));
    let t = Instant::now();
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        });
        e.deploy(&regions(&["eu", "us"]), &vars("v2"), &ctx)
    });
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    for r in ["eu", "us"] {
        assert!(error_of(&results, r).message.contains("cancelled"));
    }
}
