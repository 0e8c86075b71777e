//! `shipgate deploy` on Kubernetes end to end (fake `kubectl`, one context per region).

use crate::common::{code, fakes, Project};

const CONFIG: &str = r#"
[app]
name = "api"

[target]
adapter = "kubernetes"
image = "ghcr.io/acme/api:{version}"

[target.kubernetes]
deployment = "api"
container = "app"
namespace = "prod"
context = "gke-{region}"

[defaults]
command_timeout = "30s"

[[stage]]
name = "canary"
regions = ["eu"]
on_failure = "rollback"

[[stage]]
name = "primary"
regions = ["us", "asia"]
on_failure = "rollback"
"#;

fn kube_project() -> Project {
    let mut p = Project::with_config(CONFIG);
    fakes::install(p.path(), "kubectl");
    for r in ["eu", "us", "asia"] {
        fakes::kube_seed(
            p.path(),
            &format!("gke-{r}"),
            "prod",
            Some(("api", "app", "ghcr.io/acme/api:v1")),
        );
    }
    p.env("SHIPGATE_VERSION", "v2");
    p
}

fn image(p: &Project, region: &str) -> String {
    fakes::kube_image(p.path(), &format!("gke-{region}"), "prod", "api", "app")
}

#[test]
fn deploys_each_context_with_set_image_annotate_and_rollout_status() {
    let p = kube_project();
    p.run(&["deploy"]).expect(code::SUCCESS);
    for r in ["eu", "us", "asia"] {
        assert_eq!(image(&p, r), "ghcr.io/acme/api:v2", "{r}");
    }
    let eu: Vec<Vec<String>> = fakes::calls(p.path())
        .into_iter()
        .filter(|c| c.contains(&"gke-eu".to_string()))
        .collect();
    let verbs: Vec<String> = eu.iter().map(|c| c[5..].join(" ")).collect();
    assert_eq!(verbs[0], "get deployment api -o json", "{verbs:?}");
    assert_eq!(
        verbs[1], "set image deployment/api app=ghcr.io/acme/api:v2",
        "{verbs:?}"
    );
    assert!(
        verbs[2].starts_with("annotate deployment/api kubernetes.io/change-cause="),
        "{verbs:?}"
    );
    assert!(
        verbs[3].starts_with("rollout status deployment/api --timeout="),
        "{verbs:?}"
    );
    assert_eq!(
        &eu[1][..5],
        &["kubectl", "--context", "gke-eu", "--namespace", "prod"]
    );
}

#[test]
fn a_failed_rollout_in_the_primary_returns_every_changed_context() {
    let p = kube_project();
    fakes::knob(p.path(), "fail-rollout-status-gke-us", "1");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    for r in ["eu", "us", "asia"] {
        assert_eq!(image(&p, r), "ghcr.io/acme/api:v1", "{r}: {}", run.stderr);
    }
    assert!(
        run.stderr.contains("gke-us"),
        "the failed command is shown: {}",
        run.stderr
    );
    let rb = p.kind("rollback").pop().unwrap();
    assert_eq!(rb["status"], "success");
    assert_eq!(rb["to_version"]["us"], "v1");
}

#[test]
fn a_rollback_whose_rollout_fails_too_exits_3_naming_the_context() {
    let p = kube_project();
    fakes::knob(p.path(), "fail-rollout-status-gke-us", "");
    let run = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    assert_eq!(image(&p, "eu"), "ghcr.io/acme/api:v1");
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(
        last["mixed_regions"],
        serde_json::json!(["us"]),
        "{}",
        run.stderr
    );
}

/// QA: `ap: \`kubectl --context ap … get deployment api -o json\` exited with code 1` dropped
/// kubectl's own `error: context "ap" does not exist`.
#[test]
fn an_unknown_context_is_quoted_and_nothing_changes() {
    let mut p = Project::with_config(CONFIG);
    fakes::install(p.path(), "kubectl");
    for r in ["eu", "us"] {
        fakes::kube_seed(
            p.path(),
            &format!("gke-{r}"),
            "prod",
            Some(("api", "app", "ghcr.io/acme/api:v1")),
        );
    }
    p.env("SHIPGATE_VERSION", "v2");
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr.contains(
            "asia: `kubectl --context gke-asia --namespace prod get deployment api -o json` exited with code 1"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("error: context \"gke-asia\" does not exist"),
        "kubectl's message is quoted: {}",
        run.stderr
    );
    assert_eq!(image(&p, "eu"), "ghcr.io/acme/api:v1");
    assert!(!fakes::calls(p.path())
        .iter()
        .any(|c| c.contains(&"set".to_string())));
}

#[test]
fn status_live_quotes_kubectl_when_it_cannot_read_a_context() {
    let p = kube_project();
    p.run(&["deploy"]).expect(code::SUCCESS);
    fakes::knob(p.path(), "fail-get-deployment-gke-us", "");
    let run = p.run(&["status", "--live"]).expect(code::CHECK_FAILED);
    assert!(
        run.stdout
            .contains("us: cannot read what runs: `kubectl --context gke-us"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout"),
        "kubectl's message is quoted: {}",
        run.stdout
    );
}

/// A failing `rollout status` (deploy and rollback) shows kubectl's reason too.
#[test]
fn a_failed_rollout_quotes_kubectl() {
    let p = kube_project();
    fakes::knob(p.path(), "fail-rollout-status-gke-us", "");
    let run = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    assert!(
        run.stderr.contains("deploy failed in us") && run.stderr.contains("rollback failed in us"),
        "{}",
        run.stderr
    );
    for what in [
        "error: deploy failed in us:",
        "error: rollback failed in us:",
    ] {
        let at = run
            .stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what} in {}", run.stderr));
        let block: String = run.stderr[at..]
            .lines()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains(
                "── stderr ──\n  error: deployment \"api\" exceeded its progress deadline"
            ),
            "{block}"
        );
    }
}
