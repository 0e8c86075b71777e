//! The files GitHub runs: `action.yml` checked against the action metadata schema and its
//! scripts run for real under bash (fake `curl`, `gh` and `cargo` on PATH, the real binary
//! for the run step), the workflows' scripts checked for injection, and `shipgate --version`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use sha2::Digest;

use crate::common::{self, code, pipeline};

const OUTPUTS: &[&str] = &[
    "version",
    "previous_version",
    "status",
    "deploy_id",
    "exit_code",
    "problems",
];

fn yaml(rel: &str) -> Value {
    let text = std::fs::read_to_string(common::repo().join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn action() -> Value {
    yaml("action.yml")
}

/// The steps of action.yml.
fn steps(action: &Value) -> &Vec<Value> {
    action["runs"]["steps"]
        .as_array()
        .expect("runs.steps is a list")
}

/// The `run:` script of the action's step with this id.
fn script(id: &str) -> String {
    let action = action();
    let step = steps(&action)
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step `{id}` in action.yml"));
    step["run"].as_str().expect("a run: script").to_string()
}

/// Every string in a YAML document, with the path to it (`runs.steps[2].env.TAG`).
fn strings<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                strings(item, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The `${{ … }}` expressions in a string.
fn expressions(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        let after = &rest[start + 3..];
        let end = after.find("}}").expect("an unclosed ${{");
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

/// The names after `prefix` in an expression (`inputs.` → `command`, `steps.` → `run`).
fn names_after<'a>(expression: &'a str, prefix: &str) -> Vec<&'a str> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = Vec::new();
    for (i, _) in expression.match_indices(prefix) {
        let before_ok = expression[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !ident(c) && c != '.');
        let name: &str = expression[i + prefix.len()..]
            .split(|c: char| !ident(c))
            .next()
            .unwrap_or_default();
        if before_ok && !name.is_empty() {
            out.push(name);
        }
    }
    out
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// GitHub's metadata syntax for a composite action (docs "Metadata syntax for GitHub
/// Actions"), as a schema: allowed and required keys, types, and the references between them.
#[test]
fn action_yml_follows_the_composite_action_metadata_schema() {
    let action = action();
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what)
        }
    };

    for k in keys(&action) {
        check(
            [
                "name",
                "author",
                "description",
                "inputs",
                "outputs",
                "runs",
                "branding",
            ]
            .contains(&k),
            format!("unknown top-level key `{k}`"),
        );
    }
    for k in ["name", "description"] {
        check(
            action[k].as_str().is_some_and(|s| !s.trim().is_empty()),
            format!("`{k}` is required"),
        );
    }
    if let Some(branding) = action.get("branding") {
        let colors = [
            "white",
            "black",
            "yellow",
            "blue",
            "green",
            "orange",
            "red",
            "purple",
            "gray-dark",
        ];
        check(
            branding["color"]
                .as_str()
                .is_some_and(|c| colors.contains(&c)),
            "branding.color is not one of GitHub's".into(),
        );
        check(
            branding["icon"].is_string(),
            "branding.icon is a Feather icon name".into(),
        );
    }

    // Inputs: an id, a description; `required` a boolean, `default` a string.
    let inputs = action["inputs"].as_object().expect("inputs");
    for (id, input) in inputs {
        check(is_id(id), format!("input id `{id}`"));
        for k in keys(input) {
            check(
                ["description", "required", "default", "deprecationMessage"].contains(&k),
                format!("inputs.{id}: unknown key `{k}`"),
            );
        }
        check(
            input["description"]
                .as_str()
                .is_some_and(|s| !s.trim().is_empty()),
            format!("inputs.{id} has no description"),
        );
        check(
            input.get("required").is_none_or(Value::is_boolean),
            format!("inputs.{id}.required is not a boolean"),
        );
        check(
            input.get("default").is_none_or(Value::is_string),
            format!("inputs.{id}.default is not a string"),
        );
    }
    for (id, default) in [
        ("command", "deploy"),
        ("args", ""),
        ("config", "pipeline.toml"),
        ("version", "${{ github.action_ref }}"),
        ("working-directory", "."),
    ] {
        check(
            inputs.get(id).is_some_and(|i| i["default"] == default),
            format!("inputs.{id} defaults to {default:?}"),
        );
    }

    // runs: composite, with steps.
    let runs = &action["runs"];
    check(
        runs["using"] == "composite",
        "runs.using is composite".into(),
    );
    for k in keys(runs) {
        check(
            ["using", "steps"].contains(&k),
            format!("runs: `{k}` is not for a composite action"),
        );
    }
    let steps = steps(&action);
    check(!steps.is_empty(), "runs.steps is empty".into());
    let mut ids: Vec<&str> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = format!("runs.steps[{i}]");
        for k in keys(step) {
            check(
                [
                    "name",
                    "id",
                    "if",
                    "run",
                    "shell",
                    "uses",
                    "with",
                    "env",
                    "working-directory",
                    "continue-on-error",
                ]
                .contains(&k),
                format!("{at}: unknown key `{k}`"),
            );
        }
        let (run, uses) = (step.get("run"), step.get("uses"));
        check(
            run.is_some() != uses.is_some(),
            format!("{at}: exactly one of run/uses"),
        );
        if run.is_some() {
            check(
                step["shell"].as_str().is_some_and(|s| {
                    ["bash", "sh", "pwsh", "python", "cmd", "powershell"].contains(&s)
                }),
                format!("{at}: a run step needs a shell"),
            );
            check(
                step.get("with").is_none(),
                format!("{at}: `with` is for uses steps"),
            );
        } else {
            check(
                uses.and_then(Value::as_str)
                    .is_some_and(|u| u.contains('@') || u.starts_with("./")),
                format!("{at}: uses names a ref"),
            );
            check(
                step.get("shell").is_none() && step.get("working-directory").is_none(),
                format!("{at}: shell/working-directory are for run steps"),
            );
        }
        if let Some(env) = step.get("env") {
            for (k, v) in env.as_object().expect("env is a map") {
                check(v.is_string(), format!("{at}.env.{k} is not a string"));
            }
        }
        // A step reads only the outputs of steps before it.
        let mut all = Vec::new();
        strings(step, at.clone(), &mut all);
        for (path, s) in all {
            for e in expressions(s) {
                for id in names_after(e, "steps.") {
                    check(
                        ids.contains(&id),
                        format!("{path}: `steps.{id}` is not an earlier step"),
                    );
                }
            }
        }
        if let Some(id) = step["id"].as_str() {
            check(is_id(id), format!("{at}: step id `{id}`"));
            check(!ids.contains(&id), format!("{at}: duplicate id `{id}`"));
            ids.push(id);
        }
    }

    // Outputs: a description and a value from a step's outputs, each the shipgate one.
    let outputs = action["outputs"].as_object().expect("outputs");
    for (id, output) in outputs {
        check(
            keys(output)
                .iter()
                .all(|k| ["description", "value"].contains(k)),
            format!("outputs.{id}: only description and value"),
        );
        check(
            output["description"].is_string(),
            format!("outputs.{id} has no description"),
        );
        check(
            output["value"] == format!("${{{{ steps.run.outputs.{id} }}}}").as_str(),
            format!("outputs.{id}.value is not the run step's `{id}`"),
        );
    }
    let mut names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = OUTPUTS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "the action's outputs");

    // Every `inputs.X` and `steps.Y` anywhere names a real input and step.
    let mut all = Vec::new();
    strings(&action, String::new(), &mut all);
    for (path, s) in &all {
        for e in expressions(s) {
            for name in names_after(e, "inputs.") {
                check(
                    inputs.contains_key(name),
                    format!("{path}: `inputs.{name}` is no input"),
                );
            }
            for id in names_after(e, "steps.") {
                check(
                    ids.contains(&id),
                    format!("{path}: `steps.{id}` is no step"),
                );
            }
        }
    }
    assert!(
        problems.is_empty(),
        "action.yml:\n  {}",
        problems.join("\n  ")
    );
}

/// The run scripts of a workflow or an action, with where they are.
fn run_scripts(doc: &Value, file: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut step_lists: Vec<(String, &Value)> = vec![("runs".into(), &doc["runs"]["steps"])];
    if let Some(jobs) = doc["jobs"].as_object() {
        for (name, job) in jobs {
            step_lists.push((format!("jobs.{name}"), &job["steps"]));
        }
    }
    for (at, list) in step_lists {
        for (i, step) in list.as_array().into_iter().flatten().enumerate() {
            if let Some(run) = step["run"].as_str() {
                out.push((format!("{file}: {at}.steps[{i}]"), run.to_string()));
            }
        }
    }
    out
}

/// Script injection: an expression in a `run:` script is spliced into the script's text
/// before bash sees it, so an input (a branch name, a PR title, a dispatch input) holding
/// `"; curl … | sh; "` would run. Every value reaches a script through `env:` instead.
#[test]
fn no_run_script_splices_an_expression() {
    let mut files = vec!["action.yml".to_string()];
    for dir in [".github/workflows", "examples/github"] {
        let mut names: Vec<String> = std::fs::read_dir(common::repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yml"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        files.extend(names);
    }
    let mut scripts = 0;
    for file in &files {
        for (at, run) in run_scripts(&yaml(file), file) {
            scripts += 1;
            assert!(
                !run.contains("${{"),
                "{at}: an expression in a run: script (pass it through env:):\n{run}"
            );
        }
    }
    assert!(
        scripts >= 8,
        "found only {scripts} run scripts in {files:?}"
    );
    for f in ["deploy.yml", "rollback.yml", "check.yml"] {
        assert!(
            files.contains(&format!("examples/github/{f}")),
            "examples/github/{f}"
        );
    }
}

/// What the workflows promise the README does: the recover step after a cancelled deploy, the
/// permissions of the git store, and one deploy at a time.
#[test]
fn example_deploy_workflow_recovers_a_cancelled_run_and_may_write_history() {
    let deploy = yaml("examples/github/deploy.yml");
    assert_eq!(deploy["permissions"]["contents"], "write");
    assert_eq!(deploy["permissions"]["deployments"], "write");
    let job = &deploy["jobs"]["deploy"];
    assert_eq!(job["concurrency"]["cancel-in-progress"], false);
    assert!(job["timeout-minutes"].is_number());
    let steps = job["steps"].as_array().unwrap();
    assert_eq!(steps[0]["with"]["fetch-depth"], 0);
    let recover = steps
        .iter()
        .find(|s| s["if"] == "cancelled()")
        .expect("a step for a cancelled run");
    assert_eq!(recover["with"]["command"], "recover");
    assert_eq!(recover["with"]["args"], "--latest --yes");
    let deploy_step = steps.iter().find(|s| s["id"] == "deploy").unwrap();
    assert_eq!(deploy_step["uses"], recover["uses"]);
    assert!(deploy_step["env"]["GITHUB_TOKEN"].is_string());

    let check = yaml("examples/github/check.yml");
    assert_eq!(check["on"]["schedule"][0]["cron"], "*/5 * * * *");
    let step = &check["jobs"]["check"]["steps"][1];
    assert_eq!(step["with"]["command"], "status");
    assert_eq!(step["with"]["args"], "--check --notify");

    let rollback = yaml("examples/github/rollback.yml");
    let inputs = &rollback["on"]["workflow_dispatch"]["inputs"];
    assert_eq!(inputs["to"]["required"], true);
    assert_eq!(inputs["reason"]["required"], true);
    assert_eq!(inputs["region"]["required"], false);
}

/// A scratch dir with fakes on PATH for running the action's scripts.
struct Runner {
    dir: tempfile::TempDir,
}

const FAKE_CURL: &str = r#"#!/bin/sh
# curl -sSL --proto =https --retry 3 -w '%{http_code}' -o FILE URL, served from $FAKE_RELEASE.
out="" url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-w|--proto|--retry) [ "$1" = -o ] && out="$2"; shift 2 ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
echo "$url" >> "$FAKE_LOG"
name="${url##*/}"
if [ -f "$FAKE_RELEASE/$name" ]; then cp "$FAKE_RELEASE/$name" "$out"; printf 200; else printf 404; fi
"#;

const FAKE_CARGO: &str = r#"#!/bin/sh
echo "cargo $*" >> "$FAKE_LOG"
root=""
while [ $# -gt 0 ]; do [ "$1" = --root ] && root="$2"; shift; done
mkdir -p "$root/bin"
printf '#!/bin/sh\necho "shipgate 0.0.0 (built from source)"\n' > "$root/bin/shipgate"
chmod +x "$root/bin/shipgate"
"#;

/// Answers `gh api repos/acme/shipgate/releases…` with $FAKE_TAGS, one per line.
const FAKE_GH: &str = r#"#!/bin/sh
echo "gh $*" >> "$FAKE_LOG"
case "$2" in
  */releases/latest) printf '%s\n' "$FAKE_TAGS" | head -n1 ;;
  */releases*) printf '%s\n' "$FAKE_TAGS" ;;
  *) exit 1 ;;
esac
"#;

const ASSET: &str = "shipgate-x86_64-unknown-linux-musl";

impl Runner {
    fn new() -> Self {
        let r = Runner {
            dir: tempfile::tempdir().unwrap(),
        };
        for (name, text) in [("curl", FAKE_CURL), ("cargo", FAKE_CARGO), ("gh", FAKE_GH)] {
            r.script(&format!("bin/{name}"), text);
        }
        std::fs::create_dir_all(r.path("release")).unwrap();
        r
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn script(&self, rel: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// A release holding the fake binary and, unless `sums` is None, that SHA256SUMS.
    fn release(&self, sums: Option<&str>) -> String {
        let binary = "#!/bin/sh\necho \"shipgate 9.9.9 (0123456789ab)\"\n";
        std::fs::write(self.path("release").join(ASSET), binary).unwrap();
        let sum = hex::encode(sha2::Sha256::digest(binary));
        if let Some(sums) = sums {
            let sums = sums.replace("{sum}", &sum);
            std::fs::write(self.path("release/SHA256SUMS"), sums).unwrap();
        }
        sum
    }

    /// Runs a step's script as the runner does (`bash --noprofile --norc -eo pipefail`), with
    /// only the fakes, /usr/bin and /bin on PATH.
    fn run(&self, id: &str, env: &[(&str, &str)]) -> common::Run {
        let file = self.path(&format!("{id}.sh"));
        std::fs::write(&file, script(id)).unwrap();
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(self.dir.path())
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.path("bin").display()),
            )
            .env("HOME", self.dir.path())
            .env("GITHUB_OUTPUT", self.path("github_output"))
            .env("GITHUB_PATH", self.path("github_path"))
            .env("FAKE_LOG", self.path("fake.log"))
            .env("FAKE_RELEASE", self.path("release"))
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run bash").into()
    }

    fn install(&self, tag: &str) -> common::Run {
        let dir = self.path("tool").display().to_string();
        let src = self.path("src").display().to_string();
        self.run(
            "install",
            &[
                ("REPO", "acme/shipgate"),
                ("TAG", tag),
                ("ASSET", ASSET),
                ("DIR", &dir),
                ("ACTION_PATH", &src),
            ],
        )
    }

    fn outputs(&self) -> Vec<(String, String)> {
        self.read("github_output")
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn output(&self, key: &str) -> String {
        self.outputs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no output {key}: {:?}", self.outputs()))
    }
}

#[test]
fn install_downloads_the_release_binary_verifies_its_checksum_and_puts_it_on_path() {
    let r = Runner::new();
    let sum = r.release(Some(&format!(
        "{}  shipgate-aarch64-apple-darwin\n{{sum}}  {ASSET}\n",
        "0".repeat(64)
    )));
    let run = r.install("v9.9.9").expect(code::SUCCESS);
    assert!(
        run.stdout.contains(&format!("verified (sha256 {sum})")),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("shipgate 9.9.9 (0123456789ab)"),
        "{run:?}"
    );
    let base = "https://github.com/acme/shipgate/releases/download/v9.9.9";
    assert_eq!(
        r.read("fake.log"),
        format!("{base}/{ASSET}\n{base}/SHA256SUMS\n")
    );
    let bin = r.path("tool/bin");
    assert_eq!(r.read("github_path"), format!("{}\n", bin.display()));
    assert_eq!(r.output("path"), bin.join("shipgate").display().to_string());

    // A second run in the job (the recover step), or a cache hit: nothing is downloaded.
    std::fs::remove_file(r.path("fake.log")).unwrap();
    let run = r.install("v9.9.9").expect(code::SUCCESS);
    assert!(run.stdout.contains("using"), "{run:?}");
    assert_eq!(r.read("fake.log"), "");
}

#[test]
fn install_refuses_a_binary_whose_checksum_does_not_match() {
    let r = Runner::new();
    r.release(Some(&format!("{}  {ASSET}\n", "ab".repeat(32))));
    let run = r.install("v9.9.9");
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("::error title=shipgate install::checksum mismatch for"),
        "{run:?}"
    );
    assert!(!r.path("tool/bin/shipgate").exists());
    assert_eq!(r.read("github_path"), "");
}

#[test]
fn install_refuses_a_release_without_sha256sums_or_without_a_line_for_the_binary() {
    let r = Runner::new();
    r.release(None);
    let run = r.install("v9.9.9");
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("refusing an unverified binary"),
        "{run:?}"
    );
    assert!(!r.path("tool/bin/shipgate").exists());

    r.release(Some("{sum}  shipgate-aarch64-apple-darwin\n"));
    let run = r.install("v9.9.9");
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("has no line for"), "{run:?}");
    assert!(!r.path("tool/bin/shipgate").exists());
    assert!(!r.read("fake.log").contains("cargo"));
}

#[test]
fn install_builds_from_source_when_no_release_binary_matches() {
    // A branch or commit ref: no release at all.
    let r = Runner::new();
    let run = r.install("").expect(code::SUCCESS);
    assert!(run.stdout.contains("built from source"), "{run:?}");
    let cargo = format!(
        "cargo install --locked --path {} --root {}\n",
        r.path("src").display(),
        r.path("tool").display()
    );
    assert_eq!(r.read("fake.log"), cargo);
    assert!(r.read("github_path").contains("tool/bin"));

    // A release without this runner's binary.
    let r = Runner::new();
    let run = r.install("v9.9.9").expect(code::SUCCESS);
    assert!(
        run.stdout
            .contains(&format!("release v9.9.9 has no {ASSET}: building")),
        "{run:?}"
    );
    let cargo = format!(
        "cargo install --locked --path {} --root {}\n",
        r.path("src").display(),
        r.path("tool").display()
    );
    assert!(
        r.read("fake.log").ends_with(&cargo),
        "{}",
        r.read("fake.log")
    );
}

fn resolve(r: &Runner, os: &str, arch: &str, version: &str, tags: &str) -> common::Run {
    let cache = r.path("toolcache").display().to_string();
    r.run(
        "resolve",
        &[
            ("RUNNER_OS", os),
            ("RUNNER_ARCH", arch),
            ("RUNNER_TOOL_CACHE", &cache),
            ("VERSION_INPUT", version),
            ("ACTION_REF", ""),
            ("ACTION_REPOSITORY", ""),
            ("ACTION_PATH", "/home/runner/work/_actions/acme/shipgate/v1"),
            ("GH_TOKEN", "t"),
            ("FAKE_TAGS", tags),
        ],
    )
}

#[test]
fn resolve_picks_the_asset_for_the_runner_and_the_release_for_the_ref() {
    let tags = "v2.0.0\nv1.3.0\nv1.2.9\nv1.10.0-x";
    for (os, arch, version, tag, asset) in [
        // Default: the ref the action was used at, from its path (`@v1`): its newest release.
        ("Linux", "X64", "", "v1.3.0", ASSET),
        (
            "Linux",
            "ARM64",
            "v1.2.9",
            "v1.2.9",
            "shipgate-aarch64-unknown-linux-musl",
        ),
        (
            "macOS",
            "X64",
            "1.3.0",
            "v1.3.0",
            "shipgate-x86_64-apple-darwin",
        ),
        (
            "macOS",
            "ARM64",
            "latest",
            "v2.0.0",
            "shipgate-aarch64-apple-darwin",
        ),
        ("Linux", "X64", "v1.2", "v1.2.9", ASSET),
        // A branch: built from source.
        ("Linux", "X64", "main", "", ASSET),
        // An arch with no binary: built from source.
        ("Linux", "ARM", "v1.3.0", "", ""),
    ] {
        let r = Runner::new();
        resolve(&r, os, arch, version, tags).expect(code::SUCCESS);
        let at = format!("{os}/{arch} {version:?}");
        assert_eq!(r.output("repo"), "acme/shipgate", "{at}");
        assert_eq!(r.output("tag"), tag, "{at}");
        assert_eq!(r.output("asset"), asset, "{at}");
        let dir = r.output("dir");
        assert!(dir.starts_with(&r.path("toolcache/shipgate/").display().to_string()));
        if !tag.is_empty() {
            assert!(dir.ends_with(&format!("/{tag}-{asset}")), "{at}: {dir}");
        }
    }

    let r = Runner::new();
    let run = resolve(&r, "Windows", "X64", "v1.3.0", tags);
    assert_ne!(run.code, 0);
    assert!(run.stdout.contains("not Windows"), "{run:?}");
}

/// A version input holding a newline, `$(…)` or `/` reaches no output line, command or path
/// of its own.
#[test]
fn resolve_keeps_a_hostile_version_input_out_of_outputs_and_paths() {
    let r = Runner::new();
    resolve(
        &r,
        "Linux",
        "X64",
        "v1.2.3\nevil=1 $(touch pwned) ../../x",
        "",
    )
    .expect(code::SUCCESS);
    let outputs = r.outputs();
    assert_eq!(
        outputs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["repo", "tag", "asset", "dir"],
        "{outputs:?}"
    );
    assert_eq!(r.output("tag"), "");
    let dir = r.output("dir");
    let name = dir.rsplit('/').next().unwrap();
    assert!(name.starts_with("source-v1.2.3_evil"), "{dir}");
    assert!(!name.contains(['/', '$', ' ']), "{dir}");
    assert!(!r.path("pwned").exists());
}

/// `args` is split on whitespace into words passed as they are: no quote removal, no globs,
/// no `$(…)`; `--config` comes first, and shipgate replaces bash (exec), so the runner's
/// signals reach it.
#[test]
fn run_step_passes_each_word_as_one_argument_and_execs_shipgate() {
    let r = Runner::new();
    let fake = r.script(
        "fake-shipgate",
        "#!/bin/sh\necho $$ > \"$FAKE_PID\"\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$FAKE_ARGS\"\n",
    );
    std::fs::write(r.path("x.toml"), "").unwrap();
    let pid = r.path("pid");
    let args_file = r.path("args");
    let file = r.path("run.sh");
    std::fs::write(&file, script("run")).unwrap();
    let child = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&file)
        .current_dir(r.dir.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("INSTALLED_SHIPGATE", &fake)
        .env("INPUT_COMMAND", "status")
        .env("INPUT_CONFIG", "deploy/my pipeline.toml")
        .env(
            "INPUT_ARGS",
            "  --check\t--notify\n--region=lhr $(touch pwned) `touch pwned2` *.toml \"a b\" $HOME\n",
        )
        .env("FAKE_PID", &pid)
        .env("FAKE_ARGS", &args_file)
        .spawn()
        .unwrap();
    let bash_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--config",
            "deploy/my pipeline.toml",
            "status",
            "--check",
            "--notify",
            "--region=lhr",
            "$(touch",
            "pwned)",
            "`touch",
            "pwned2`",
            "*.toml",
            "\"a",
            "b\"",
            "$HOME",
        ]
    );
    assert!(!r.path("pwned").exists() && !r.path("pwned2").exists());
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        bash_pid.to_string(),
        "shipgate is not the step's process (no exec)"
    );

    // No args at all: just the command (bash 3.2 on macOS has no empty "${a[@]}" under -u).
    let child = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("INSTALLED_SHIPGATE", &fake)
        .env("INPUT_COMMAND", "deploy")
        .env("INPUT_CONFIG", "pipeline.toml")
        .env("INPUT_ARGS", "")
        .env("FAKE_PID", &pid)
        .env("FAKE_ARGS", &args_file)
        .output()
        .unwrap();
    assert!(child.status.success(), "{child:?}");
    assert_eq!(
        std::fs::read_to_string(&args_file).unwrap(),
        "--config\npipeline.toml\ndeploy\n"
    );
}

/// The action's run step with the real binary on a scratch pipeline: every step output
/// shipgate writes is one the action maps, and the exit code is shipgate's.
#[test]
fn run_step_with_the_real_binary_writes_the_outputs_the_action_maps() {
    let p = pipeline::exec_project(pipeline::THREE_STAGES);
    let file = p.write("run.sh", &script("run"));
    let out_file = p.path().join("github_output");
    let summary = p.path().join("summary.md");
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&file)
        .current_dir(p.path())
        .stdin(Stdio::null());
    for var in [
        "GITHUB_TOKEN",
        "SHIPGATE_CONFIG",
        "SHIPGATE_STATE_DIR",
        "SHIPGATE_VERSION",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(p.tty_env())
        .env("SHIPGATE_NO_PROGRESS", "1")
        .env("CI", "true")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("INSTALLED_SHIPGATE", common::bin())
        .env("INPUT_COMMAND", "deploy")
        .env("INPUT_CONFIG", "pipeline.toml")
        .env("INPUT_ARGS", "--version v2");
    let run: common::Run = cmd.output().unwrap().into();
    run.expect(code::SUCCESS);
    assert_eq!(p.live("fra"), "v2");
    let written = std::fs::read_to_string(&out_file).unwrap();
    let action = action();
    let mapped = action["outputs"].as_object().unwrap();
    let mut keys = Vec::new();
    for line in written.lines() {
        let (k, v) = line.split_once('=').expect("key=value");
        assert!(
            mapped.contains_key(k),
            "shipgate writes `{k}`, the action drops it"
        );
        keys.push(k);
        if k == "exit_code" {
            assert_eq!(v, "0");
        }
        if k == "version" {
            assert_eq!(v, "v2");
        }
    }
    for k in [
        "version",
        "previous_version",
        "status",
        "deploy_id",
        "exit_code",
    ] {
        assert!(keys.contains(&k), "no `{k}` in {written}");
    }
}

/// Every script of action.yml passes shellcheck (CI installs it; elsewhere the test says it
/// could not look).
#[test]
fn action_scripts_pass_shellcheck() {
    if Command::new("shellcheck")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "shellcheck is not installed (.ci/run installs it)"
        );
        eprintln!("shellcheck not installed: action.yml's scripts not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (at, run) in run_scripts(&action(), "action.yml") {
        let file = dir.path().join("step.sh");
        std::fs::write(&file, run).unwrap();
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{at}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The commit of the checkout this test runs in, as build.rs finds it; `None` outside one.
fn repo_commit(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != repo.canonicalize().ok()? {
        return None;
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// `shipgate --version` names the build's commit, so a bug report says exactly which build.
/// This build's binary, not `SHIPGATE_TEST_BIN`: the commit is this checkout's.
#[test]
fn version_names_the_commit_it_was_built_from() {
    let repo = common::repo();
    let commit = repo_commit(&repo)
        .or_else(|| {
            ["SHIPGATE_COMMIT"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
                .map(|s| s.trim().chars().take(12).collect())
        })
        .unwrap_or_else(|| "unknown".into());
    for flag in ["--version", "-V"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shipgate"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("shipgate {} ({commit})\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
