//! Programs that cannot start are refused before anything changes (exit 2), reported by
//! `validate` and `--dry-run`, and a deploy program that vanishes mid-run leaves its region
//! unchanged instead of triggering a rollback that can only fail.

use std::os::unix::fs::PermissionsExt;

use crate::common::pipeline::{exec_project, REGIONS, THREE_STAGES};
use crate::common::{code, fakes, Project};

fn remove(p: &Project, file: &str) {
    std::fs::remove_file(p.path().join(file)).unwrap();
}

#[track_caller]
fn assert_nothing_happened(p: &Project, stderr: &str) {
    assert!(!p.state_dir().exists(), "state was written:\n{stderr}");
    assert!(p.calls().is_empty(), "scripts ran: {:?}", p.calls());
    for r in REGIONS {
        assert_eq!(p.live(r), "v1", "{r}");
    }
    assert!(!stderr.contains("rolling back"), "{stderr}");
}

/// QA: a missing deploy script was reported as a failed rollback (exit 3, a P0 page) although
/// nothing could have changed.
#[test]
fn a_missing_deploy_program_is_refused_before_anything_is_recorded() {
    let p = exec_project(THREE_STAGES);
    remove(&p, "deploy.sh");
    let run = p.run(&["deploy"]).expect(code::USAGE);
    let first = run.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(
            "error: cannot start `./deploy.sh`, set by `target.exec.deploy`: no such file: "
        ) && first.ends_with("deploy.sh; nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("this deploy would run it in lhr, nrt, ewr, ord, fra"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: relative paths start from the pipeline file's directory"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&p, &run.stderr);
}

#[test]
fn a_deploy_program_without_execute_permission_is_refused() {
    let p = exec_project(THREE_STAGES);
    std::fs::set_permissions(
        p.path().join("deploy.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let run = p.run(&["deploy"]).expect(code::USAGE);
    assert!(run.stderr.contains("is not executable"), "{}", run.stderr);
    assert!(run.stderr.contains("chmod +x"), "{}", run.stderr);
    assert_nothing_happened(&p, &run.stderr);
}

#[test]
fn a_script_whose_interpreter_is_missing_is_refused() {
    let p = exec_project(THREE_STAGES);
    p.script("deploy.sh", "#!/nonexistent/shipgate-sh\necho never\n");
    let run = p.run(&["deploy"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("starts with `#!/nonexistent/shipgate-sh`"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&p, &run.stderr);
}

#[test]
fn every_missing_program_is_listed_with_its_config_key() {
    let p = exec_project(THREE_STAGES);
    remove(&p, "rollback.sh");
    remove(&p, "health.sh");
    let run = p.run(&["deploy"]).expect(code::USAGE);
    assert!(
        run.stderr.contains(
            "error: 2 programs this deploy would run cannot be started; nothing was changed"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`./rollback.sh` (set by `target.exec.rollback`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`./health.sh` (set by `gate.health.run`"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&p, &run.stderr);
}

#[test]
fn a_missing_current_program_is_refused() {
    let p = exec_project(THREE_STAGES);
    remove(&p, "current.sh");
    let run = p.run(&["deploy"]).expect(code::USAGE);
    assert!(
        run.stderr.contains("set by `target.exec.current`"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&p, &run.stderr);
}

/// `validate` and `--dry-run` are previews: they warn (a deploy would refuse) and exit 0, as
/// they run where the scripts or the platform CLI may not be (a lint job, the README examples).
#[test]
fn validate_and_dry_run_warn_about_a_missing_program() {
    let p = exec_project(THREE_STAGES);
    remove(&p, "deploy.sh");
    let run = p.run(&["validate"]).expect(code::SUCCESS);
    assert!(
        run.stderr.contains("warning: `./deploy.sh` (set by `target.exec.deploy`, run in lhr, nrt, ewr, ord, fra): no such file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("a deploy would refuse to start (exit 2)"),
        "{}",
        run.stderr
    );
    let run = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("$ ./deploy.sh lhr v2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("warning: `./deploy.sh` (set by `target.exec.deploy`"),
        "{}",
        run.stderr
    );
    let json = p
        .run(&["deploy", "--dry-run", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    let missing = json["missing_programs"]
        .as_array()
        .expect("missing_programs");
    assert_eq!(missing.len(), 1, "{json}");
    assert!(missing[0].as_str().unwrap().contains("target.exec.deploy"));
    assert_nothing_happened(&p, "");
}

/// Resolution follows the executor: a bare name on PATH (the project's `bin/`), a relative
/// path from the pipeline file's directory even when shipgate runs elsewhere.
#[test]
fn programs_are_resolved_like_the_executor_does() {
    let p = exec_project(&THREE_STAGES.replace(
        "[\"./health.sh\", \"{region}\"]",
        "[\"sg-health-on-path\", \"{region}\"]",
    ));
    p.script(
        "bin/sg-health-on-path",
        "#!/bin/sh\nexec \"$(dirname \"$0\")/../health.sh\" \"$@\"\n",
    );
    let config = p.path().join("pipeline.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = p
        .command(&["-c", config.to_str().unwrap(), "deploy"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let run = crate::common::Run::from(out).expect(code::SUCCESS);
    assert_eq!(p.live("fra"), "v2", "{}", run.stderr);
    // The same name off PATH is refused.
    let p2 = exec_project(&THREE_STAGES.replace(
        "[\"./health.sh\", \"{region}\"]",
        "[\"sg-health-nowhere\", \"{region}\"]",
    ));
    let run = p2.run(&["deploy"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("`sg-health-nowhere`, set by `gate.health.run`: not found on PATH"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("put its directory on PATH"),
        "{}",
        run.stderr
    );
}

/// A program whose path depends on the version cannot be checked ahead; if it cannot start,
/// nothing ran: the regions are unchanged, nothing is rolled back, the deploy fails (exit 1,
/// not 3) without a rollback page.
#[test]
fn a_deploy_program_that_cannot_start_at_run_time_leaves_its_regions_unchanged() {
    let p = exec_project(&THREE_STAGES.replace(
        "deploy = [\"./deploy.sh\"",
        "deploy = [\"./deploy-{version}.sh\"",
    ));
    let run = p.run(&["deploy"]).expect(code::FAILED);
    assert!(
        run.stderr
            .contains("cannot run `./deploy-v2.sh`: program not found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("stage canary failed: no region was changed, nothing to roll back"),
        "{}",
        run.stderr
    );
    assert!(p.kind("rollback").is_empty(), "{:?}", p.kind("rollback"));
    assert!(p.calls().is_empty(), "{:?}", p.calls());
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "failed");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .ends_with("no region was changed"),
        "{last}"
    );
    assert_eq!(p.kind("stage").pop().unwrap()["status"], "failed");
    assert!(!p.audit().iter().any(|a| a["title"]
        .as_str()
        .unwrap_or("")
        .contains("ROLLBACK FAILED")));
    for r in REGIONS {
        assert_eq!(p.live(r), "v1", "{r}");
    }
}

/// A manual rollback needs `current` and `rollback`, not `deploy`: a missing deploy script
/// must not block it, a missing rollback script refuses it before anything changes.
#[test]
fn a_manual_rollback_checks_only_what_it_runs() {
    let p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.script("rollback.sh.bak", crate::common::pipeline::ROLLBACK);
    remove(&p, "rollback.sh");
    let run = p
        .run(&["rollback", "--yes", "--to", "v1", "--force"])
        .expect(code::USAGE);
    assert!(
        run.stderr.contains("set by `target.exec.rollback`")
            && run.stderr.contains("nothing was changed"),
        "{}",
        run.stderr
    );
    assert_eq!(p.live("lhr"), "v2");
    std::fs::rename(
        p.path().join("rollback.sh.bak"),
        p.path().join("rollback.sh"),
    )
    .unwrap();
    remove(&p, "deploy.sh");
    let run = p
        .run(&["rollback", "--yes", "--to", "v1", "--force"])
        .expect(code::SUCCESS);
    assert_eq!(p.live("lhr"), "v1", "{}", run.stderr);
}

#[test]
fn a_missing_kubectl_is_refused_naming_its_key() {
    let p = Project::with_config(
        r#"
[app]
name = "api"
[target]
adapter = "kubernetes"
image = "ghcr.io/acme/api:{version}"
[target.kubernetes]
deployment = "api"
container = "app"
context = "{region}"
bin = "tools/kubectl"
[[stage]]
name = "canary"
regions = ["eu"]
"#,
    );
    let run = p.run(&["deploy", "--version", "v2"]).expect(code::USAGE);
    assert!(
        run.stderr
            .contains("error: cannot start `tools/kubectl`, set by `target.kubernetes.bin`"),
        "{}",
        run.stderr
    );
    assert!(!p.state_dir().exists());
    // Installed there, it runs.
    let bin = fakes::install(p.path(), "kubectl");
    fakes::kube_seed(
        p.path(),
        "eu",
        "default",
        Some(("api", "app", "ghcr.io/acme/api:v1")),
    );
    std::fs::create_dir_all(p.path().join("tools")).unwrap();
    std::fs::rename(bin, p.path().join("tools/kubectl")).unwrap();
    p.run(&["deploy", "--version", "v2"]).expect(code::SUCCESS);
}
