//! The kubernetes canary of a stepped stage, as data: the `<deployment>-canary` manifest built
//! from the stable Deployment, and the HTTPRoute weight patch (`traffic = "gateway-api"`, the
//! mechanism Flagger uses).
//!
//! The canary is the stable Deployment's pod template with the new image and one more label,
//! `shipgate.dev/track: canary`, on its selector and pods. With `traffic = "replicas"` the
//! stable Service (selecting the app's labels) sends to both, so traffic follows the replica
//! ratio. With `gateway-api` the canary Service `<service>-canary` selects the track label and
//! the route's weights split the traffic.

use serde_json::{json, Map, Value};

/// The label that tells canary pods from stable ones.
pub const TRACK_LABEL: &str = "shipgate.dev/track";

pub fn canary_name(deployment: &str) -> String {
    format!("{deployment}-canary")
}

fn with_track(labels: Option<&Value>) -> Value {
    let mut m = labels
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    m.insert(TRACK_LABEL.into(), Value::String("canary".into()));
    Value::Object(m)
}

/// The canary Deployment for `kubectl apply -f -`: the stable one's template with `image` in
/// `container`, `replicas` pods, the track label, and the change-cause.
pub fn manifest(
    stable: &Value,
    deployment: &str,
    container: &str,
    image: &str,
    replicas: u32,
    cause: &str,
) -> Result<String, String> {
    let mut template = stable
        .pointer("/spec/template")
        .cloned()
        .ok_or("the stable deployment has no pod template")?;
    let containers = template
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or("the stable deployment's pod template has no containers")?;
    let c = containers
        .iter_mut()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        .ok_or_else(|| format!("the stable deployment has no container `{container}`"))?;
    c["image"] = Value::String(image.into());
    let labels = with_track(template.pointer("/metadata/labels"));
    template["metadata"]["labels"] = labels;
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(canary_name(deployment)));
    if let Some(ns) = stable.pointer("/metadata/namespace") {
        metadata.insert("namespace".into(), ns.clone());
    }
    metadata.insert(
        "labels".into(),
        with_track(stable.pointer("/metadata/labels")),
    );
    metadata.insert(
        "annotations".into(),
        json!({ super::kubernetes::CHANGE_CAUSE: cause }),
    );
    let doc = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": with_track(stable.pointer("/spec/selector/matchLabels"))},
            "template": template,
        },
    });
    Ok(doc.to_string())
}

/// The JSON patch setting the weight of every backendRef of `route` naming `stable` (100 −
/// `weight`) or `canary` (`weight`), for `kubectl patch httproute R --type=json -p`.
pub fn route_patch(
    route: &Value,
    stable: &str,
    canary: &str,
    weight: u8,
) -> Result<String, String> {
    let rules = route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .ok_or("the HTTPRoute has no rules")?;
    let mut ops = Vec::new();
    let (mut saw_stable, mut saw_canary) = (false, false);
    for (i, rule) in rules.iter().enumerate() {
        let refs = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, r) in refs.iter().enumerate() {
            let w = match r.get("name").and_then(Value::as_str) {
                Some(n) if n == stable => {
                    saw_stable = true;
                    100 - u32::from(weight)
                }
                Some(n) if n == canary => {
                    saw_canary = true;
                    u32::from(weight)
                }
                _ => continue,
            };
            ops.push(json!({"op": "replace", "path": format!("/spec/rules/{i}/backendRefs/{j}/weight"), "value": w}));
        }
    }
    if !(saw_stable && saw_canary) {
        return Err(format!(
            "the HTTPRoute must send to both Services `{stable}` and `{canary}` (as backendRefs of a rule)"
        ));
    }
    Ok(Value::Array(ops).to_string())
}

/// A Deployment's `spec.replicas` (0 when absent or unset).
pub fn replicas(deployment: Option<&Value>) -> u32 {
    deployment
        .and_then(|d| d.pointer("/spec/replicas"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stable() -> Value {
        json!({"metadata": {"name": "api", "namespace": "prod", "labels": {"app": "api"}},
               "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "api"}},
                        "template": {"metadata": {"labels": {"app": "api"}},
                                     "spec": {"containers": [{"name": "app", "image": "r/web:v1", "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn the_canary_is_the_stable_template_with_the_new_image_and_the_track_label() {
        let m: Value =
            serde_json::from_str(&manifest(&stable(), "api", "app", "r/web:v2", 1, "c").unwrap())
                .unwrap();
        assert_eq!(m["metadata"]["name"], "api-canary");
        assert_eq!(m["metadata"]["namespace"], "prod");
        assert_eq!(m["spec"]["replicas"], 1);
        assert_eq!(
            m["spec"]["selector"]["matchLabels"],
            json!({"app": "api", "shipgate.dev/track": "canary"})
        );
        assert_eq!(
            m["spec"]["template"]["metadata"]["labels"],
            json!({"app": "api", "shipgate.dev/track": "canary"})
        );
        let c = &m["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "r/web:v2");
        assert_eq!(
            c["ports"][0]["containerPort"], 80,
            "the rest of the template is kept"
        );
        assert!(manifest(&stable(), "api", "web", "x", 1, "c")
            .unwrap_err()
            .contains("no container `web`"));
    }

    #[test]
    fn the_route_patch_sets_both_weights_wherever_they_are() {
        let route = json!({"spec": {"rules": [
            {"matches": [{"path": {"value": "/"}}],
             "backendRefs": [{"name": "other", "port": 80}, {"name": "api", "port": 80, "weight": 100},
                             {"name": "api-canary", "port": 80, "weight": 0}]}]}});
        assert_eq!(
            route_patch(&route, "api", "api-canary", 25).unwrap(),
            r#"[{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":75},{"op":"replace","path":"/spec/rules/0/backendRefs/2/weight","value":25}]"#
        );
        assert!(route_patch(&route, "api", "web-canary", 25).is_err());
    }
}
