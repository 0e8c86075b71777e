//! A ledger that never lies under faults (issue "A ledger that never lies"): a full disk, an
//! unwritable or impossible state dir, symlinks planted in it, secrets that look like the
//! ledger's own keys, a torn line, a grandchild that outlives its command. Each test is named
//! after a defect reproduced against the release binary before this change.
//!
//! Mounting a tmpfs and `chattr +i` need root: those tests print why and return when they cannot
//! run here (CI runs as root, so they run there).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::code;
use crate::common::pipeline::{exec_header, exec_project};
use crate::common::Project;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `256k`) with `opts` on `dir`; `None` (with the
    /// reason printed) when this machine cannot.
    fn mount(dir: &Path, size: &str, opts: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}{opts}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        if !o.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Many regions in one stage: its stage record is longer than a tmpfs page, so once the disk
/// is full it cannot fit into the slack of the file's last page and its write fails part-way.
const WIDE_STAGES: &str = r#"
[[stage]]
name = "canary"
regions = ["lhr"]
on_failure = "rollback"

[[stage]]
name = "primary"
regions = [REGIONS]
max_parallel = 40
on_failure = "rollback"

[[stage]]
name = "full"
regions = ["ord", "fra"]
on_failure = "rollback"
"#;

fn wide_regions() -> Vec<String> {
    (1..=40)
        .map(|i| format!("region-with-a-long-name-{i:02}"))
        .collect()
}

/// A deploy whose disk fills while the `primary` stage deploys (its first region's deploy
/// command fills it), on a tmpfs state dir. `free_on_rollback`: the rollback frees it again.
fn full_disk_project(free_on_rollback: bool) -> Option<(Project, Tmpfs)> {
    let regions = wide_regions();
    let list: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
    let p = exec_project(&format!(
        "{}{}",
        exec_header(),
        WIDE_STAGES.replace("REGIONS", &list.join(", "))
    ));
    for r in &regions {
        p.write(&format!("state/{r}"), "v1\n");
    }
    let mnt = Tmpfs::mount(&p.state_dir(), "256k", "")?;
    // The deploy of the first primary region fills the disk; a rollback may free it.
    let fill = p.state_dir().join("fill");
    p.script(
        "deploy.sh",
        &format!(
            "#!/bin/sh\n[ \"$1\" = \"{first}\" ] && dd if=/dev/zero of='{fill}' bs=1k 2>/dev/null\n\
             exec ./deploy-real.sh \"$@\"\n",
            first = regions[0],
            fill = fill.display()
        ),
    );
    p.script("deploy-real.sh", crate::common::pipeline::DEPLOY);
    if free_on_rollback {
        p.script(
            "rollback.sh",
            &format!(
                "#!/bin/sh\nrm -f '{}'\nexec ./rollback-real.sh \"$@\"\n",
                fill.display()
            ),
        );
        p.script("rollback-real.sh", crate::common::pipeline::ROLLBACK);
    }
    Some((p, mnt))
}

fn deployed_regions(p: &Project) -> Vec<String> {
    p.calls()
        .iter()
        .filter_map(|c| c.strip_prefix("deploy ").map(str::to_string))
        .filter_map(|c| c.split(' ').next().map(str::to_string))
        .collect()
}

/// Was: an append that hit ENOSPC part-way left the partial line in `history.jsonl`; the
/// deploy kept starting stages, lost its stage and final records, printed "deploy success
/// (exit 0)", and `history verify` failed for ever after.
#[test]
fn a_disk_that_fills_mid_deploy_stops_the_deploy_keeps_history_whole_and_never_exits_0() {
    let Some((p, _mnt)) = full_disk_project(false) else {
        return;
    };
    let run = p.run(&["deploy"]);
    assert_eq!(
        run.code,
        code::ROLLBACK_FAILED,
        "records still fail: exit 3\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot record"),
        "says why: {}",
        run.stderr
    );
    // Every region is named with what it runs.
    for r in ["lhr", &wide_regions()[0], &wide_regions()[39]] {
        assert!(run.stderr.contains(r), "names {r}: {}", run.stderr);
    }
    let deployed = deployed_regions(&p);
    assert!(
        !deployed.iter().any(|r| r == "ord" || r == "fra"),
        "no stage starts once a record cannot be written: {deployed:?}"
    );
    // What it changed went back all the same.
    for r in wide_regions().iter().chain([&"lhr".to_string()]) {
        assert_eq!(p.live(r), "v1", "{r} rolled back");
    }
    // Space comes back: history has no partial line, and verifies.
    std::fs::remove_file(p.state_dir().join("fill")).unwrap();
    let history = std::fs::read(p.state_dir().join("history.jsonl")).unwrap();
    assert_eq!(history.last(), Some(&b'\n'), "no torn line left behind");
    p.run(&["history", "verify"]).expect(code::SUCCESS);
    // status (rebuilding the state the failed appends could not write) works again.
    p.run(&["status"]).expect(code::SUCCESS);
}

/// When the records can be written again by the time the rollback is recorded, the deploy is
/// an ordinary failure that says why it stopped: exit 1, never 0.
#[test]
fn a_disk_full_for_a_moment_rolls_the_deploy_back_and_exits_1() {
    let Some((p, _mnt)) = full_disk_project(true) else {
        return;
    };
    let run = p.run(&["deploy", "--format", "json"]);
    assert_eq!(run.code, code::FAILED, "{}", run.stderr);
    assert!(run.stderr.contains("cannot record"), "{}", run.stderr);
    let deployed = deployed_regions(&p);
    assert!(
        !deployed.iter().any(|r| r == "ord" || r == "fra"),
        "{deployed:?}"
    );
    for r in wide_regions().iter().chain([&"lhr".to_string()]) {
        assert_eq!(p.live(r), "v1", "{r} rolled back");
    }
    let last = p.kind("deploy").pop().unwrap();
    assert_eq!(last["status"], "rolled_back", "{last}");
    assert!(
        last["reason"].as_str().unwrap().contains("cannot record"),
        "{last}"
    );
    p.run(&["history", "verify"]).expect(code::SUCCESS);
}

/// Was: an immutable `audit.jsonl` was known at the first notification, before any region
/// changed, yet the deploy ran to the end, exited 0, and every audit record was lost. An
/// immutable `status.json` likewise only warned on every update.
#[test]
fn an_unwritable_audit_or_status_file_refuses_the_deploy_before_anything_changes() {
    if !is_root() {
        eprintln!("skipped: chattr +i needs root (CI runs as root)");
        return;
    }
    for name in ["audit.jsonl", "status.json"] {
        let p = exec_project(crate::common::pipeline::THREE_STAGES);
        std::fs::create_dir_all(p.state_dir()).unwrap();
        let file = p.state_dir().join(name);
        std::fs::write(&file, if name == "status.json" { "{}" } else { "" }).unwrap();
        if !chattr("+i", &file) {
            eprintln!("skipped: this filesystem has no immutable flag");
            return;
        }
        let run = p.run(&["deploy"]);
        chattr("-i", &file);
        p.skip_fold_check();
        let run = run.expect(code::USAGE);
        assert!(run.stderr.contains(name), "{}", run.stderr);
        assert!(p.calls().is_empty(), "nothing was changed: {:?}", p.calls());
        assert!(!p.state_dir().join("history.jsonl").exists());
    }
}

/// Was: a read-only, full or impossible state dir made a deploy exit 1, although nothing was
/// changed (SPEC §6 says 2).
#[test]
fn a_state_dir_that_cannot_be_written_is_exit_2_with_the_path_and_a_hint() {
    let p = exec_project(crate::common::pipeline::THREE_STAGES);
    // The parent is a file.
    p.write("afile", "x");
    let run = p
        .run(&["--state-dir", "afile/state", "deploy"])
        .expect(code::USAGE);
    assert!(run.stderr.contains("afile/state"), "{}", run.stderr);
    assert!(run.stderr.contains("hint"), "{}", run.stderr);
    for cmd in [&["rollback", "--yes"][..], &["recover", "--yes"][..]] {
        let mut args = vec!["--state-dir", "afile/state"];
        args.extend_from_slice(cmd);
        let run = p.run(&args);
        assert_eq!(run.code, code::USAGE, "{cmd:?}: {}", run.stderr);
    }
    assert!(p.calls().is_empty(), "{:?}", p.calls());

    // Read-only, and full: need a tmpfs.
    let ro = p.path().join("ro");
    let Some(_ro) = Tmpfs::mount(&ro, "64k", ",ro") else {
        return;
    };
    let run = p.run(&["--state-dir", "ro", "deploy"]).expect(code::USAGE);
    assert!(run.stderr.contains("ro"), "{}", run.stderr);
    let full = p.path().join("full");
    let Some(_full) = Tmpfs::mount(&full, "64k", "") else {
        return;
    };
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k"])
        .arg(format!("of={}", full.join("fill").display()))
        .output();
    let run = p
        .run(&["--state-dir", "full", "deploy"])
        .expect(code::USAGE);
    assert!(run.stderr.contains("full"), "{}", run.stderr);
    assert!(p.calls().is_empty(), "{:?}", p.calls());
}

/// Was: `.shipgate/lock -> FILE` truncated FILE and `.shipgate/history.jsonl -> FILE` appended
/// to it; a checkout an attacker can commit to holds the default state dir.
#[test]
fn symlinks_in_the_state_dir_are_refused_and_never_written_through() {
    for name in ["lock", "history.jsonl", "audit.jsonl", "status.json"] {
        let p = exec_project(crate::common::pipeline::THREE_STAGES);
        let victim = p.write("victim.txt", "precious\n");
        std::fs::create_dir_all(p.state_dir()).unwrap();
        std::os::unix::fs::symlink(&victim, p.state_dir().join(name)).unwrap();
        let run = p.run(&["deploy"]);
        assert_eq!(run.code, code::USAGE, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(name), "{name}: {}", run.stderr);
        assert_eq!(p.read("victim.txt"), "precious\n", "{name}");
        assert!(p.calls().is_empty(), "{name}: {:?}", p.calls());
    }
}

/// Was: a secret whose value equals a JSON key or an enum value (`FLY_API_TOKEN=schema`,
/// `=prev`, `=success`) was masked inside the records' structure (`{"***":1,…}`) and broke
/// `history verify` for ever.
#[test]
fn a_secret_equal_to_a_key_or_an_enum_value_never_rewrites_the_records_structure() {
    for secret in ["schema", "prev", "success", "deploy", "version"] {
        let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
        p.env("FLY_API_TOKEN", secret);
        p.env("DEPLOY_NOTE", secret);
        p.run(&["deploy"]).expect(code::SUCCESS);
        p.run(&["history", "verify"]).expect(code::SUCCESS);
        let deploys = p.kind("deploy");
        assert_eq!(deploys.len(), 2, "{secret}");
        assert_eq!(deploys[1]["status"], "success", "{secret}");
        for r in p.history().iter().chain(p.audit().iter()) {
            assert!(r.get("schema").is_some() && r.get("prev").is_some(), "{r}");
        }
        let status: Value = serde_json::from_str(&p.read(".shipgate/status.json")).unwrap();
        assert_eq!(status["last_deploy"]["status"], "success", "{secret}");
    }
}

/// Was: a torn final line (a crash mid-append) made `history verify` exit 1 on every later
/// run, with no supported way back.
#[test]
fn a_torn_final_line_is_moved_aside_by_the_next_append_with_an_audit_record() {
    let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    let history = p.state_dir().join("history.jsonl");
    let torn = b"{\"schema\":1,\"id\":\"01TORN\",\"kind\":\"sta";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    p.run(&["history", "verify"]).expect(code::FAILED);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);
    let run = p.run(&["history", "verify"]).expect(code::SUCCESS);
    assert!(
        run.stdout.contains("repaired") || run.stderr.contains("repaired"),
        "verify reports the earlier repair:\n{}{}",
        run.stdout,
        run.stderr
    );
    // The torn bytes are kept as evidence, beside the file, named after the time.
    let aside: Vec<_> = std::fs::read_dir(p.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("history.jsonl.torn-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "one file moved aside");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), torn);
    let repair = p
        .audit()
        .into_iter()
        .find(|r| r["title"].as_str().is_some_and(|t| t.contains("torn")))
        .expect("an audit record of the repair");
    assert!(
        repair["message"]
            .as_str()
            .unwrap()
            .contains("history.jsonl.torn-"),
        "{repair}"
    );
    // A line broken inside the chain (an edit) is still reported, never repaired.
    let text = std::fs::read_to_string(&history).unwrap();
    let edited = text.replacen("\"v2\"", "\"v9\"", 1);
    std::fs::write(&history, edited).unwrap();
    p.skip_fold_check();
    p.run(&["history", "verify"]).expect(code::FAILED);
    p.env("TEST_VERSION", "v4");
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.run(&["history", "verify"]).expect(code::FAILED);
}

/// Was: a deploy script that left `sleep 3600 &` in its process group (holding its stdout)
/// outlived the command and shipgate itself: shipgate moved on after 2 s and never signalled
/// the group.
#[test]
fn a_grandchild_left_in_the_commands_process_group_dies_with_the_command() {
    let p = exec_project(crate::common::pipeline::THREE_STAGES);
    p.script(
        "deploy.sh",
        &format!(
            "#!/bin/sh\nsleep 3600 &\necho $! >> \"$(dirname \"$0\")/state/grandchildren\"\n{}",
            crate::common::pipeline::DEPLOY.trim_start_matches("#!/bin/sh\n")
        ),
    );
    p.run(&["deploy"]).expect(code::SUCCESS);
    let pids: Vec<i32> = p
        .read("state/grandchildren")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 5);
    for pid in pids {
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "grandchild {pid} outlived its command");
    }
}

#[test]
fn a_setsid_escapee_holding_the_output_is_named_in_a_warning() {
    let mut p = exec_project(crate::common::pipeline::THREE_STAGES);
    p.env("GITHUB_ACTIONS", "true");
    // Only the canary's first region starts an escapee: it holds the deploy's stdout while
    // outside the command's process group (and session), where no group signal reaches it.
    p.script(
        "deploy.sh",
        &format!(
            // The command goes on only once the escapee has left the group (else the group's
            // TERM could reach it first).
            "#!/bin/sh\nif [ \"$1\" = lhr ]; then d=\"$(dirname \"$0\")/state\"; setsid sh -c ': > \"$0/escaped\"; exec sleep 30' \"$d\" & echo $! > \"$d/escapee\"; while [ ! -e \"$d/escaped\" ]; do sleep 0.01; done; fi\n{}",
            crate::common::pipeline::DEPLOY.trim_start_matches("#!/bin/sh\n")
        ),
    );
    let r = p.run(&["deploy"]);
    let pid: i32 = p.read("state/escapee").trim().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions; the escapee is ours to end.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let r = r.expect(code::SUCCESS);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("outside its process group"))
        .unwrap_or_else(|| panic!("no escapee warning: {}", r.stderr));
    assert!(warning.contains("./deploy.sh lhr v2"), "{warning}");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("::warning::") && l.contains("outside its process group")),
        "{}",
        r.stderr
    );
}
