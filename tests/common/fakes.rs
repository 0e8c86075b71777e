//! The fake `flyctl` and `kubectl` of `tests/fakes/`: install them in a project, seed their
//! state, turn knobs, read the calls they logged. See `tests/fakes/README.md`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies the fake `name` (`flyctl` or `kubectl`) into `<root>/bin/` and returns its absolute
/// path. Its state lives in `<root>/fake-state` (see [`state_dir`]).
pub fn install(root: &Path, name: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fakes")
        .join(name);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let dst = bin.join(name);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    dst
}

/// The state dir of fakes installed under `root` (when `FAKE_STATE_DIR` is not set).
pub fn state_dir(root: &Path) -> PathBuf {
    root.join("fake-state")
}

/// Turns a knob on: `content` empty = every call, `"N"` = the next N calls.
pub fn knob(root: &Path, name: &str, content: &str) {
    let dir = state_dir(root);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), content).unwrap();
}

/// Every call logged so far, each as its argv (argv[0] is the fake's base name).
pub fn calls(root: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(state_dir(root).join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}")))
        .collect()
}

/// Forgets the calls logged so far.
pub fn clear_calls(root: &Path) {
    let _ = std::fs::remove_file(state_dir(root).join("calls.jsonl"));
}

fn seed(fake: &Path, args: &[&str]) {
    // ETXTBSY: another test thread forked while this script was still open for writing, and
    // its child holds the descriptor until it execs; it goes away in a moment.
    let mut tries = 0;
    let out = loop {
        match Command::new(fake).args(args).output() {
            Err(e) if e.raw_os_error() == Some(26) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.unwrap(),
        }
    };
    assert!(
        out.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fly machines: `regions` as (region, count), all running `image`.
pub fn fly_seed(root: &Path, app: &str, image: &str, regions: &[(&str, usize)]) {
    let mut args = vec![
        "fake-seed".to_string(),
        "--app".into(),
        app.into(),
        "--image".into(),
        image.into(),
    ];
    args.extend(regions.iter().map(|(r, n)| format!("{r}={n}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    seed(&root.join("bin/flyctl"), &args);
}

/// A kube context with, when `deployment` is given, a deployment at revision 1:
/// `deployment = Some(("api", "app", "ghcr.io/acme/web:v1"))`.
pub fn kube_seed(
    root: &Path,
    context: &str,
    namespace: &str,
    deployment: Option<(&str, &str, &str)>,
) {
    let container;
    let mut args = vec!["--context", context, "--namespace", namespace, "fake-seed"];
    if let Some((name, c, image)) = deployment {
        container = format!("{c}={image}");
        args.extend([name, container.as_str()]);
    }
    seed(&root.join("bin/kubectl"), &args);
}

/// The fly machines' images in `region`, from the fake's state.
pub fn fly_images(root: &Path, app: &str, region: &str) -> Vec<String> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir(root).join("fly.json")).unwrap())
            .unwrap();
    state["apps"][app]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["region"] == region)
        .map(|m| m["image"].as_str().unwrap().to_string())
        .collect()
}

/// The image of `container` of a deployment, from the fake's state.
pub fn kube_image(
    root: &Path,
    context: &str,
    namespace: &str,
    deployment: &str,
    container: &str,
) -> String {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir(root).join("kube.json")).unwrap())
            .unwrap();
    state["contexts"][context]["namespaces"][namespace]["deployments"][deployment]["containers"]
        [container]
        .as_str()
        .unwrap()
        .to_string()
}
