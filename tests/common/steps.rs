//! Helpers for stepped stages: seeding the fake kubectl with replicas and routes, and reading
//! deployments back.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

fn fake(root: &Path, args: &[&str]) {
    let out = Command::new(root.join("bin/kubectl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A context with deployment `name` (container `container` at `image`) running `replicas`.
pub fn kube_seed_replicas(
    root: &Path,
    context: &str,
    name: &str,
    container_image: &str,
    replicas: u32,
) {
    let r = format!("--replicas={replicas}");
    fake(
        root,
        &[
            "--context",
            context,
            "--namespace",
            "prod",
            "fake-seed",
            name,
            container_image,
            &r,
        ],
    );
}

/// An HTTPRoute `route` sending everything to `stable`, nothing to `canary`.
pub fn kube_route(root: &Path, context: &str, route: &str, stable: &str, canary: &str) {
    fake(
        root,
        &[
            "--context",
            context,
            "--namespace",
            "prod",
            "fake-route",
            route,
            stable,
            canary,
        ],
    );
}

fn kube_state(root: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(super::fakes::state_dir(root).join("kube.json")).unwrap(),
    )
    .unwrap()
}

/// (image of `app`, replicas) of a deployment in namespace `prod`; `None` when absent.
pub fn kube_deployment(root: &Path, context: &str, name: &str) -> Option<(String, u64)> {
    let d = &kube_state(root)["contexts"][context]["namespaces"]["prod"]["deployments"][name];
    Some((
        d["containers"]["app"].as_str()?.to_string(),
        d["replicas"].as_u64()?,
    ))
}

/// The backendRefs weights of a route, by service name.
pub fn kube_route_weights(root: &Path, context: &str, route: &str) -> Vec<(String, u64)> {
    kube_state(root)["contexts"][context]["namespaces"]["prod"]["httproutes"][route]["spec"]
        ["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}
