//! The foundation: config errors point at file:line:column, every example validates, version
//! resolution, help and completions.

use crate::common::{code, repo, Project};

const MINIMAL: &str = r#"
[app]
name = "demo"

[target]
adapter = "exec"

[target.exec]
deploy = ["./deploy.sh", "{region}", "{version}"]

[[stage]]
name = "canary"
regions = ["lhr"]
gates = ["api"]

[gate.api]
type = "http"
url = "http://127.0.0.1:9/health"
"#;

/// Runs `validate` on `config` and returns stderr, asserting exit 2.
fn invalid(config: &str) -> String {
    let p = Project::with_config(config);
    let run = p.run(&["validate"]).expect(code::USAGE);
    assert!(
        run.stderr.starts_with("error: pipeline.toml:"),
        "no file:line:col in\n{}",
        run.stderr
    );
    run.stderr
}

#[test]
fn minimal_config_is_valid() {
    let p = Project::with_config(MINIMAL);
    let run = p.run(&["validate"]).expect(code::SUCCESS);
    assert!(run.stdout.contains("stage 1. canary"), "{}", run.stdout);
    assert!(
        run.stdout.contains("trips after 3 failure(s)"),
        "P1 default failures: {}",
        run.stdout
    );
}

#[test]
fn unknown_key_names_line_column_and_suggests() {
    let err = invalid(&MINIMAL.replace("gates = [\"api\"]", "gates = [\"api\"]\ntimout = \"5m\""));
    assert!(
        err.contains("pipeline.toml:15:1: unknown key `timout`"),
        "{err}"
    );
    assert!(
        err.contains("15 | timout = \"5m\""),
        "quotes the line: {err}"
    );
    assert!(err.contains("hint: did you mean `timeout`?"), "{err}");
}

/// serde stops at the first unknown key; shipgate reports every one of them, in file order,
/// together with the errors found after reading the rest.
#[test]
fn every_unknown_key_is_reported_with_the_other_errors() {
    let config = format!(
        "state.dri = \".x\"{}\n[target.flyy]\napp = \"x\"\n\n[[stages]]\nname = \"late\"\nregions = [\"a\"]\n",
        MINIMAL
            .replace("name = \"demo\"", "name = \"demo\"\nverison.pattern = 1")
            .replace(
                "gates = [\"api\"]",
                "gates = [\"apii\"]\ntimout = [\n  1,\n  2,\n]"
            )
    );
    let err = invalid(&config);
    let expected = [
        "pipeline.toml:1:7: unknown key `dri`",
        "hint: did you mean `dir`?",
        "pipeline.toml:4:1: unknown key `verison`",
        "hint: did you mean `version`?",
        "pipeline.toml:15:10: unknown gate `apii` in stage `canary`",
        "pipeline.toml:16:1: unknown key `timout`",
        "hint: did you mean `timeout`?",
        "pipeline.toml:25:9: unknown key `flyy`",
        "hint: did you mean `fly`?",
        "pipeline.toml:28:3: unknown key `stages`",
        "hint: did you mean `stage`?",
        "6 error(s) in all",
    ];
    let mut at = 0;
    for e in expected {
        let found = err[at..]
            .find(e)
            .unwrap_or_else(|| panic!("`{e}` missing or out of order in\n{err}"));
        at += found + e.len();
    }
}

/// Blanking an unknown key must not shift or invent anything: a wrong type after it is still
/// reported at its own place (and ends the collection there, as serde gives up on it).
#[test]
fn a_type_error_after_an_unknown_key_is_reported_at_its_place() {
    let err = invalid(
        &MINIMAL
            .replace("name = \"demo\"", "name = \"demo\"\nnmae = \"ß✓\"")
            .replace("regions = [\"lhr\"]", "regions = \"lhr\""),
    );
    assert!(
        err.contains("pipeline.toml:4:1: unknown key `nmae`"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:14:11: "), "{err}");
    assert!(err.contains("14 | regions = \"lhr\""), "{err}");
    assert!(err.contains("2 error(s) in all"), "{err}");
}

/// `--format json` prints one JSON document even when the command ends before its own; jsonl
/// prints it on one line.
#[test]
fn a_config_error_is_one_json_document_with_format_json() {
    let p = Project::with_config(&MINIMAL.replace("gates = [\"api\"]", "gates = [\"apii\"]"));
    let r = p.run(&["--format", "json", "validate"]).expect(code::USAGE);
    let doc = r.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], code::USAGE);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown gate `apii`"),
        "{doc}"
    );
    assert_eq!(doc["error"]["hint"], "did you mean `api`?");
    let r = p
        .run(&["--format", "jsonl", "validate"])
        .expect(code::USAGE);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let r = Project::with_config(MINIMAL)
        .run(&["--format", "jsonl", "validate"])
        .expect(code::SUCCESS);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    // A command line clap refuses, too.
    let r = p
        .run(&["--format=json", "history", "--last", "abc"])
        .expect(code::USAGE);
    let doc = r.json();
    assert_eq!(doc["exit_code"], code::USAGE, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid value 'abc' for '--last <N>'"),
        "{doc}"
    );
    assert!(r.stderr.contains("try '--help'"), "{}", r.stderr);
}

#[test]
fn unknown_gate_reference_suggests_the_defined_one() {
    let err = invalid(&MINIMAL.replace("gates = [\"api\"]", "gates = [\"apii\"]"));
    assert!(
        err.contains("pipeline.toml:14:10: unknown gate `apii` in stage `canary`"),
        "{err}"
    );
    assert!(err.contains("did you mean `api`?"), "{err}");
}

#[test]
fn unknown_gate_type_is_an_error() {
    let err = invalid(&MINIMAL.replace("type = \"http\"", "type = \"htp\""));
    assert!(
        err.contains("pipeline.toml:17:8: unknown gate type `htp`"),
        "{err}"
    );
    assert!(err.contains("did you mean `http`?"), "{err}");
}

#[test]
fn unknown_placeholder_is_an_error() {
    let err =
        invalid(&MINIMAL.replace("\"{region}\", \"{version}\"", "\"{regoin}\", \"{version}\""));
    assert!(
        err.contains("pipeline.toml:9:27: unknown placeholder `{regoin}`"),
        "{err}"
    );
    assert!(err.contains("did you mean `{region}`?"), "{err}");
}

#[test]
fn promql_label_matchers_are_not_placeholders() {
    let config = format!(
        "{MINIMAL}\n[gate.errors]\ntype = \"prometheus\"\nurl = \"http://127.0.0.1:9090\"\nquery = 'sum(rate(x{{code=~\"5..\",region=\"{{region}}\"}}[1m]))'\nmax = 0.05\n"
    );
    Project::with_config(&config)
        .run(&["validate"])
        .expect(code::SUCCESS);
}

#[test]
fn region_in_two_stages_is_an_error() {
    let config =
        format!("{MINIMAL}\n[[stage]]\nname = \"primary\"\nregions = [\"ewr\", \"lhr\"]\n");
    let err = invalid(&config);
    assert!(
        err.contains("region `lhr` is in two stages: `canary` and `primary`"),
        "{err}"
    );
    assert!(err.contains("pipeline.toml:22:19:"), "{err}");
}

#[test]
fn stage_without_regions_is_an_error() {
    let err = invalid(&MINIMAL.replace("regions = [\"lhr\"]", "regions = []"));
    assert!(
        err.contains("pipeline.toml:13:11: stage `canary` has no regions"),
        "{err}"
    );
}

#[test]
fn bad_duration_is_an_error() {
    let err = invalid(&MINIMAL.replace(
        "gates = [\"api\"]",
        "gates = [\"api\"]\ntimeout = \"5 parsecs\"",
    ));
    assert!(
        err.contains("pipeline.toml:15:11: invalid duration `5 parsecs`"),
        "{err}"
    );
    assert!(err.contains("300s, 5m, 1h30m"), "{err}");
}

#[test]
fn bad_on_failure_is_an_error() {
    let err = invalid(&MINIMAL.replace(
        "gates = [\"api\"]",
        "gates = [\"api\"]\non_failure = \"rollbak\"",
    ));
    assert!(
        err.contains("pipeline.toml:15:14: invalid on_failure `rollbak`"),
        "{err}"
    );
    assert!(err.contains("did you mean `rollback`?"), "{err}");
}

#[test]
fn missing_adapter_section_is_an_error() {
    let config = MINIMAL.replace(
        "[target.exec]\ndeploy = [\"./deploy.sh\", \"{region}\", \"{version}\"]\n",
        "",
    );
    let err = invalid(&config.replace(
        "adapter = \"exec\"",
        "adapter = \"fly\"\nimage = \"r/a:{version}\"",
    ));
    assert!(
        err.contains("adapter `fly` needs a `[target.fly]` section"),
        "{err}"
    );
}

#[test]
fn key_of_another_gate_type_is_an_error() {
    let err = invalid(&MINIMAL.replace(
        "url = \"http://127.0.0.1:9/health\"",
        "url = \"http://127.0.0.1:9/health\"\nquery = \"up\"",
    ));
    assert!(
        err.contains("pipeline.toml:19:9: `query` is not a key of a http gate"),
        "{err}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let config = MINIMAL.replace("gates = [\"api\"]", "gates = [\"nope\"]\nbake = \"soon\"");
    let err = invalid(&config);
    assert!(
        err.contains("unknown gate `nope`") && err.contains("invalid duration `soon`"),
        "{err}"
    );
    assert!(err.contains("2 error(s) in all"), "{err}");
}

#[test]
fn toml_syntax_error_points_at_it() {
    let err = invalid("[app]\nname = \"x\n");
    assert!(err.contains("pipeline.toml:2:"), "{err}");
}

#[test]
fn missing_config_file_is_a_usage_error_with_a_hint() {
    let p = Project::new();
    let run = p.run(&["validate"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("cannot read pipeline file `pipeline.toml`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let p = Project::new();
            let run = p.run(&["-c", path.to_str().unwrap(), "validate"]);
            assert_eq!(
                run.code,
                code::SUCCESS,
                "{}: {}",
                path.display(),
                run.stderr
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected at least the three documented examples, found {seen}"
    );
    let p = Project::new();
    p.run(&[
        "-c",
        repo().join("pipeline.toml").to_str().unwrap(),
        "validate",
    ])
    .expect(code::SUCCESS);
}

#[test]
fn validate_json_describes_the_plan() {
    let p = Project::with_config(MINIMAL);
    let run = p
        .run(&["validate", "--format", "json"])
        .expect(code::SUCCESS);
    let v = run.json();
    assert_eq!(v["stages"][0]["name"], "canary");
    assert_eq!(v["stages"][0]["on_failure"], "rollback");
    assert_eq!(v["gates"]["api"]["failures"], 3);
    assert_eq!(v["gates"]["api"]["severity"], "P1");
}

#[test]
fn help_for_every_subcommand() {
    let p = Project::new();
    for sub in [
        "deploy",
        "rollback",
        "status",
        "publish-event",
        "history",
        "validate",
        "lock",
        "completions",
    ] {
        let run = p.run(&[sub, "--help"]).expect(code::SUCCESS);
        assert!(
            run.stdout.contains("Usage: shipgate"),
            "{sub}: {}",
            run.stdout
        );
    }
    let run = p.run(&["--help"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("Exit codes:") && run.stdout.contains("143"),
        "{}",
        run.stdout
    );
}

#[test]
fn completions_for_bash() {
    let run = Project::new()
        .run(&["completions", "bash"])
        .expect(code::SUCCESS);
    assert!(
        run.stdout.contains("_shipgate()") && run.stdout.contains("publish-event"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    Project::new().run(&["deplyo"]).expect(code::USAGE);
}

/// A zero stage timeout passed `validate`, then failed every deploy at once with exit 3.
#[test]
fn a_zero_stage_timeout_is_rejected_with_its_place() {
    let err = invalid(&MINIMAL.replace("gates = [\"api\"]", "gates = [\"api\"]\ntimeout = \"0s\""));
    assert!(
        err.contains("pipeline.toml:15:11: `timeout` must be greater than zero"),
        "{err}"
    );
    assert!(
        err.contains("15 | timeout = \"0s\""),
        "quotes the line: {err}"
    );
    assert!(
        err.contains("hint: a zero `timeout` fails at once"),
        "{err}"
    );
}

/// The stage timeout covers the deploy, the gates and the bake: a bake as long can only time
/// out, whether the bake is the stage's own or the default's.
#[test]
fn a_bake_as_long_as_the_stage_timeout_is_rejected() {
    let err = invalid(&MINIMAL.replace(
        "gates = [\"api\"]",
        "gates = [\"api\"]\ntimeout = \"5m\"\nbake = \"5m\"",
    ));
    assert!(
        err.contains(
            "pipeline.toml:16:8: stage `canary` bakes for 5m but times out after 5m: it can never \
             succeed"
        ),
        "{err}"
    );
    assert!(
        err.contains("hint: make `timeout` longer than `bake`"),
        "{err}"
    );
    let err = invalid(&MINIMAL.replace("[[stage]]", "[defaults]\nbake = \"20m\"\n\n[[stage]]"));
    assert!(
        err.contains("stage `canary` bakes for 20m but times out after 10m"),
        "{err}"
    );
    // A timeout that is wrong already is reported once, not compared through its fallback.
    let err = invalid(&MINIMAL.replace(
        "gates = [\"api\"]",
        "gates = [\"api\"]\ntimeout = \"9999h\"\nbake = \"1h\"",
    ));
    assert!(err.contains("is longer than the maximum of 24h"), "{err}");
    assert!(!err.contains("bakes for"), "{err}");
}

/// Every other timeout is bounded away from zero too: `command_timeout` (defaults and stage),
/// `[target.fly].wait_timeout`, an http gate's `max_latency`.
#[test]
fn every_timeout_must_be_greater_than_zero() {
    let err = invalid(
        &MINIMAL
            .replace(
                "[[stage]]",
                "[defaults]\ncommand_timeout = \"0ms\"\n\n[[stage]]",
            )
            .replace(
                "gates = [\"api\"]",
                "gates = [\"api\"]\ncommand_timeout = \"0s\"",
            )
            .replace("type = \"http\"", "type = \"http\"\nmax_latency = \"0s\""),
    );
    for e in [
        "pipeline.toml:12:19: `command_timeout` must be greater than zero",
        "pipeline.toml:18:19: `command_timeout` must be greater than zero",
        "pipeline.toml:22:15: `max_latency` must be greater than zero",
        "3 error(s) in all",
    ] {
        assert!(err.contains(e), "`{e}` missing in\n{err}");
    }
    let fly = r#"
[app]
name = "web"
[target]
adapter = "fly"
image = "registry.fly.io/web:{version}"
[target.fly]
app = "web"
wait_timeout = "0s"
[[stage]]
name = "canary"
regions = ["lhr"]
"#;
    let err = invalid(fly);
    assert!(
        err.contains("pipeline.toml:9:16: `wait_timeout` must be greater than zero"),
        "{err}"
    );
}

/// `delay = "1000000000000h"` and `bake = "99999999999y"` passed `validate`; the delay kept a
/// rollback's verification waiting for over ten minutes. Every duration is capped at 24h.
#[test]
fn durations_longer_than_a_day_are_rejected() {
    let err = invalid(
        &MINIMAL
            .replace(
                "gates = [\"api\"]",
                "gates = [\"api\"]\nbake = \"99999999999y\"",
            )
            .replace(
                "type = \"http\"",
                "type = \"http\"\ndelay = \"1000000000000h\"",
            ),
    );
    for e in [
        "pipeline.toml:15:8: `bake` = `99999999999y` is longer than the maximum of 24h",
        "15 | bake = \"99999999999y\"",
        "pipeline.toml:19:9: `delay` = `1000000000000h` is longer than the maximum of 24h",
        "19 | delay = \"1000000000000h\"",
        "hint: every duration is at most 24h",
        "2 error(s) in all",
    ] {
        assert!(err.contains(e), "`{e}` missing in\n{err}");
    }
    let err = invalid(&MINIMAL.replace("type = \"http\"", "type = \"http\"\ninterval = \"25h\""));
    assert!(
        err.contains("pipeline.toml:18:12: `interval` = `25h` is longer than the maximum of 24h"),
        "{err}"
    );
}

#[test]
fn a_day_and_a_zero_bake_or_delay_are_accepted() {
    let p = Project::with_config(
        &MINIMAL
            .replace(
                "gates = [\"api\"]",
                "gates = [\"api\"]\ntimeout = \"24h\"\nbake = \"0s\"\ncommand_timeout = \"1day\"",
            )
            .replace(
                "type = \"http\"",
                "type = \"http\"\ndelay = \"0s\"\ntimeout = \"24h\"",
            ),
    );
    p.run(&["validate"]).expect(code::SUCCESS);
}

mod version {
    use crate::common::{code, Project};

    const CONFIG: &str = r#"
[app]
name = "demo"
version = "VERSION_SOURCE"

[target]
adapter = "exec"

[target.exec]
deploy = ["./deploy.sh", "{region}", "{version}"]

[[stage]]
name = "canary"
regions = ["lhr"]
"#;

    fn git(p: &Project, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .current_dir(p.path())
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
            ])
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A git repository holding the config, with one commit.
    fn repo(source: &str) -> Project {
        let p = Project::with_config(&CONFIG.replace("VERSION_SOURCE", source));
        p.write(".gitignore", "bin/\n.shipgate/\n");
        git(&p, &["init", "-q", "-b", "main"]);
        git(&p, &["add", "."]);
        git(&p, &["commit", "-q", "-m", "first"]);
        p
    }

    fn planned_version(p: &Project) -> (String, String) {
        let run = p
            .run(&["deploy", "--dry-run", "--format", "json"])
            .expect(code::SUCCESS);
        (
            run.json()["version"].as_str().unwrap().to_string(),
            run.stderr,
        )
    }

    #[test]
    fn git_short_is_seven_hex_digits_of_head() {
        let p = repo("git-short");
        let head = git(&p, &["rev-parse", "HEAD"]);
        let (v, stderr) = planned_version(&p);
        assert_eq!(v, head[..7]);
        assert!(
            !stderr.contains("uncommitted"),
            "clean tree reported dirty: {stderr}"
        );
    }

    #[test]
    fn git_sha_is_the_full_sha() {
        let p = repo("git-sha");
        assert_eq!(planned_version(&p).0, git(&p, &["rev-parse", "HEAD"]));
    }

    #[test]
    fn dirty_tree_is_a_warning() {
        let p = repo("git-short");
        p.write(
            "pipeline.toml",
            &format!("{}\n# edited\n", p.read("pipeline.toml")),
        );
        let (_, stderr) = planned_version(&p);
        assert!(
            stderr.contains("warning: the work tree has uncommitted changes"),
            "{stderr}"
        );
    }

    #[test]
    fn git_describe_uses_tags() {
        let p = repo("git-describe");
        git(&p, &["tag", "v1.2.0"]);
        assert_eq!(planned_version(&p).0, "v1.2.0");
        p.write("more.txt", "x");
        git(&p, &["add", "more.txt"]);
        git(&p, &["commit", "-q", "-m", "second"]);
        let head = git(&p, &["rev-parse", "HEAD"]);
        assert_eq!(planned_version(&p).0, format!("v1.2.0-1-g{}", &head[..7]));
    }

    #[test]
    fn flag_and_env_override_git() {
        let mut p = repo("git-short");
        assert_eq!(
            p.run(&[
                "deploy",
                "--dry-run",
                "--format",
                "json",
                "--version",
                "rel-7"
            ])
            .expect(code::SUCCESS)
            .json()["version"],
            "rel-7"
        );
        p.env("SHIPGATE_VERSION", "from-env");
        assert_eq!(planned_version(&p).0, "from-env");
    }

    #[test]
    fn env_source_reads_the_variable() {
        let mut p = Project::with_config(&CONFIG.replace("VERSION_SOURCE", "env:BUILD_TAG"));
        let run = p.run(&["deploy", "--dry-run"]).expect(code::USAGE);
        assert!(
            run.stderr.contains("BUILD_TAG is not set"),
            "{}",
            run.stderr
        );
        p.env("BUILD_TAG", "build-41");
        assert_eq!(planned_version(&p).0, "build-41");
        p.env("BUILD_TAG", "bad version");
        let run = p.run(&["deploy", "--dry-run"]).expect(code::USAGE);
        assert!(run.stderr.contains("invalid version"), "{}", run.stderr);
    }

    #[test]
    fn outside_a_repository_git_short_is_a_usage_error() {
        let p = Project::with_config(&CONFIG.replace("VERSION_SOURCE", "git-short"));
        // The temp dir is not inside a git repository.
        let run = p.run(&["deploy", "--dry-run"]).expect(code::USAGE);
        assert!(
            run.stderr.contains("not inside a git repository"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("--version"), "{}", run.stderr);
    }
}

#[test]
fn github_deployments_settings_are_checked() {
    let err = invalid(&format!(
        "{MINIMAL}\n[github]\ndeployments = \"per-stag\"\nenvironment = \"prod-{{region}}\"\nrepository = \"acme\"\ntoken_env = \"GH TOKEN\"\n"
    ));
    assert!(
        err.contains("invalid `[github] deployments` `per-stag`"),
        "{err}"
    );
    assert!(err.contains("did you mean `per-stage`?"), "{err}");
    // `{region}` has a value only per region.
    assert!(err.contains("unknown placeholder `{region}`"), "{err}");
    assert!(err.contains("`acme` is not a GitHub repository"), "{err}");
    assert!(
        err.contains("`GH TOKEN` is not an environment variable name"),
        "{err}"
    );
    let p = Project::with_config(&format!(
        "{MINIMAL}\n[github]\ndeployments = \"per-region\"\nenvironment = \"prod-{{region}}\"\n"
    ));
    p.run(&["validate"]).expect(code::SUCCESS);
}
