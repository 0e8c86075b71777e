//! The 3 a.m. operator (issue "The 3 a.m. operator"): the answer of a command is on stdout, so
//! it pipes, greps and redirects; progress, warnings and prompts stay on stderr.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::code;
use crate::common::pipeline::{exec_project, THREE_STAGES};
use crate::common::Project;

/// `shipgate <args>` in a real terminal (tmux); `None`, with the reason printed, where tmux is
/// missing (never in CI).
fn in_terminal(p: &Project, args: &[&str]) -> Option<crate::common::pty::Tmux> {
    if !crate::common::pty::Tmux::available() {
        eprintln!("skipped: tmux is not installed");
        return None;
    }
    let mut argv = vec![crate::common::bin()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Some(crate::common::pty::Tmux::start(
        p.path(),
        &p.tty_env(),
        &argv,
    ))
}

/// Two deploys by `ops`: v2 succeeds, v3 fails its canary gate in nrt and is rolled back.
fn deployed_then_rolled_back() -> Project {
    let mut p = exec_project(THREE_STAGES);
    p.env("SHIPGATE_ACTOR", "ops");
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("FAIL_GATE", "nrt")
        .env("BAD_VERSION", "v3");
    p.run(&["deploy"]).expect(code::FAILED);
    p
}

/// v2 deployed; v3 failed its canary gate in nrt and lhr's rollback failed (exit 3). Rollbacks
/// work again afterwards, for `recover`.
fn rollback_failed_in_lhr() -> Project {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("FAIL_GATE", "nrt")
        .env("BAD_VERSION", "v3")
        .env("FAIL_ROLLBACK", "lhr");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    p.env("FAIL_ROLLBACK", "");
    p
}

/// `shipgate <args> | <filter…>` through a real pipe: what the filter printed.
fn piped(p: &Project, args: &[&str], filter: &[&str]) -> String {
    let mut shipgate = p.command(args).stdout(Stdio::piped()).spawn().unwrap();
    let out = Command::new(filter[0])
        .args(&filter[1..])
        .stdin(shipgate.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = shipgate.wait();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Was: `history`, `status`, `history --stats`, `validate` and `lock status` printed their
/// table on stderr, so `shipgate history | head` showed nothing.
#[test]
fn the_answer_is_on_stdout_so_pipes_and_redirects_work() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);

    let head = piped(&p, &["history"], &["head", "-n", "2"]);
    assert_eq!(head.lines().count(), 2, "{head}");
    assert!(head.starts_with("TIME "), "{head}");

    let grep = piped(&p, &["status"], &["grep", "lhr"]);
    assert!(grep.contains("lhr") && grep.contains("v3"), "{grep}");

    let report = p.path().join("report.txt");
    let f = std::fs::File::create(&report).unwrap();
    let run = p
        .command(&["history", "--stats"])
        .stdout(f)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(code::SUCCESS));
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("success rate"), "{text}");

    for args in [
        &["validate"][..],
        &["lock", "status"][..],
        &["history", "--audit"][..],
        &["deploy", "--dry-run"][..],
        &["rollback", "--dry-run"][..],
    ] {
        let r = p.run(args);
        assert_eq!(r.code, code::SUCCESS, "{args:?}: {}", r.stderr);
        assert!(!r.stdout.trim().is_empty(), "{args:?}: nothing on stdout");
        assert!(!r.stdout.contains('\u{1b}'), "{args:?}: colour on a pipe");
    }
    // The final summary of a deploy is its answer; the progress lines are not.
    p.env("TEST_VERSION", "v4");
    let r = p.run(&["deploy"]).expect(code::SUCCESS);
    assert!(r.stdout.contains("deploy success"), "{}", r.stdout);
    assert!(!r.stdout.contains("stage 1/3"), "{}", r.stdout);
    assert!(r.stderr.contains("stage 1/3"), "{}", r.stderr);
}

/// `TERM=dumb` means no colour, even where colour would be forced.
#[test]
fn a_dumb_terminal_gets_no_colour() {
    let mut p = exec_project(THREE_STAGES);
    p.env("CLICOLOR_FORCE", "1");
    let forced = p.run(&["rollback", "--region", "nope", "--yes"]);
    assert!(
        forced.stderr.contains('\u{1b}'),
        "the control: {:?}",
        forced.stderr
    );
    p.env("TERM", "dumb");
    let r = p.run(&["rollback", "--region", "nope", "--yes"]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
}

/// Was: declining the rollback prompt exited 1, the code reserved for "failed and rolled
/// back". Now it is an answer: exit 0, nothing changed. Through a real terminal.
#[test]
fn a_declined_prompt_changes_nothing_and_exits_0() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);
    let history = p.read(".shipgate/history.jsonl");
    let calls = p.calls().len();
    let Some(tty) = in_terminal(&p, &["rollback"]) else {
        return;
    };
    tty.wait_for("the prompt", Duration::from_secs(20), |s| {
        s.contains("[y/N]")
    });
    tty.send(&["n", "Enter"]);
    let screen = tty.wait_for("the exit", Duration::from_secs(20), |s| {
        s.contains("[exit ")
    });
    assert!(screen.contains("aborted; nothing was changed"), "{screen}");
    assert!(screen.contains("[exit 0]"), "{screen}");
    assert_eq!(p.read(".shipgate/history.jsonl"), history);
    assert_eq!(p.calls().len(), calls, "no platform call");
}

/// Was: any run outside CI without a terminal was recorded as `cron`. Now it is `script`
/// unless cron started it, and `--trigger` / `SHIPGATE_TRIGGER` says what it was.
#[test]
fn the_trigger_is_script_outside_ci_and_can_be_named() {
    let mut p = exec_project(THREE_STAGES);
    let trigger_of_last_deploy = |p: &Project| {
        p.kind("deploy").last().unwrap()["trigger"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let out = p.command(&["deploy"]).env_remove("CI").output().unwrap();
    assert_eq!(out.status.code(), Some(code::SUCCESS));
    assert_eq!(trigger_of_last_deploy(&p), "script");
    p.env("TEST_VERSION", "v3");
    p.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(trigger_of_last_deploy(&p), "ci");
    p.env("TEST_VERSION", "v4")
        .env("SHIPGATE_TRIGGER", "release-train");
    p.run(&["deploy"]).expect(code::SUCCESS);
    assert_eq!(trigger_of_last_deploy(&p), "release-train");
    p.env("TEST_VERSION", "v5");
    p.run(&["deploy", "--trigger", "hotfix"])
        .expect(code::SUCCESS);
    assert_eq!(trigger_of_last_deploy(&p), "hotfix");
    let r = p
        .run(&["deploy", "--trigger", "Bad Name"])
        .expect(code::USAGE);
    assert!(r.stderr.contains("lowercase"), "{}", r.stderr);
}

/// Was: a successful deploy's JSON had no `ok` key, although errors have one.
#[test]
fn every_json_result_says_ok() {
    let p = exec_project(THREE_STAGES);
    let v = p
        .run(&["deploy", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    let v = p
        .run(&["rollback", "--yes", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(v["ok"], true, "{v}");
}

/// Was: `--lock-wait` waited in silence, which looks hung. Now it says who holds the lock.
#[test]
fn a_lock_wait_says_who_holds_the_lock() {
    let mut p = exec_project(THREE_STAGES);
    p.env("DEPLOY_SLEEP", "2");
    let mut holder = p
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !p.run(&["lock", "status"]).stdout.contains("held by") {
        assert!(std::time::Instant::now() < deadline, "never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.env("TEST_VERSION", "v3");
    let r = p.run(&["deploy", "--lock-wait", "1s"]).expect(code::LOCKED);
    let notice = r
        .stderr
        .lines()
        .find(|l| l.starts_with("waiting for the deploy lock (up to 1s"))
        .unwrap_or_else(|| panic!("no notice: {}", r.stderr));
    assert!(notice.contains("held by pid"), "{notice}");
    assert!(holder.wait().unwrap().success());
}

/// Was: in a terminal, a failing deploy's automatic rollback showed frozen bars (the elapsed
/// time stopped), and "verifying rollback" / "rolled back" were never drawn.
#[test]
fn a_terminal_shows_the_automatic_rollback_live() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("BAD_VERSION", "v3")
        .env("FAIL_GATE", "nrt")
        .env("ROLLBACK_SLEEP", "4");
    let Some(tty) = in_terminal(&p, &["deploy"]) else {
        return;
    };
    let first = tty.wait_for("the rollback", Duration::from_secs(30), |s| {
        s.contains("rolling back")
    });
    let elapsed = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .filter(|l| l.contains("rolling back"))
            // `⠁ lhr      4s  rolling back to v2`: the time follows the region.
            .map(|l| l.split_whitespace().nth(2).unwrap_or_default().to_string())
            .collect()
    };
    let before = elapsed(&first);
    let later = tty.wait_for("the elapsed time to move", Duration::from_secs(3), |s| {
        let now = elapsed(s);
        !now.is_empty() && now != before
    });
    assert!(later.contains("rolling back"), "{later}");
    let done = tty.wait_for("the end", Duration::from_secs(30), |s| s.contains("[exit "));
    assert!(done.contains("[exit 1]"), "{done}");
    // Each region's last state stays on screen, above the summary.
    for region in ["lhr", "nrt"] {
        assert!(
            done.lines()
                .any(|l| l.contains(&format!("✓ {region}")) && l.contains("rolled back to v2")),
            "{region}: {done}"
        );
    }
}

/// Was: a region's state was padded to the terminal's width with its time at the far right
/// edge; the bars now keep time and state together and cut the state to the width.
#[test]
fn the_bars_fit_a_narrow_terminal_with_time_next_to_state() {
    if !crate::common::pty::Tmux::available() {
        return;
    }
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3").env("SETTLE_SLEEP", "3");
    let argv = [crate::common::bin(), "deploy".to_string()];
    let tty = crate::common::pty::Tmux::start_sized(p.path(), &p.tty_env(), &argv, (50, 30));
    let screen = tty.wait_for("the canary deploying", Duration::from_secs(30), |s| {
        s.lines()
            .any(|l| l.contains(" lhr ") && l.contains("deploying"))
    });
    let bar = screen
        .lines()
        .find(|l| l.contains(" lhr ") && l.contains("deploying"))
        .unwrap();
    // `⠁ lhr      0s  deploying v3`: the time between the name and the state.
    let words: Vec<&str> = bar.split_whitespace().collect();
    assert_eq!(words[1], "lhr", "{bar}");
    assert!(words[2].ends_with('s'), "no time after the name: {bar}");
    assert_eq!(words[3], "deploying", "{bar}");
    let done = tty.wait_for("the end", Duration::from_secs(60), |s| s.contains("[exit "));
    assert!(done.contains("[exit 0]"), "{done}");
    // Each region's last state is one whole row: nothing wrapped onto the next.
    let rows = tty.rows();
    let bars: Vec<&String> = rows.iter().filter(|r| r.contains("healthy")).collect();
    assert_eq!(bars.len(), 5, "{rows:#?}");
    for row in bars {
        assert!(row.starts_with("✓ "), "a wrapped bar: {rows:#?}");
    }
}

/// Was: a region cancelled while baking was reported with a duration of 0.0s.
#[test]
fn a_region_cancelled_while_baking_has_its_real_time() {
    let p = exec_project(
        THREE_STAGES
            .replace("[defaults]\n", "[defaults]\nbake = \"20s\"\n")
            .as_str(),
    );
    // Every region runs v1; this deploys v2.
    let child = p
        .command(&["deploy", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.live("lhr") != "v2" || p.live("nrt") != "v2" {
        assert!(
            std::time::Instant::now() < deadline,
            "the canary never deployed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Baking: its deploy is done, its gates pass, and 20 s of bake are ahead.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory-safety preconditions; the child is ours.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code::SIGINT));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let canary = &result["stages"][0];
    for region in canary["regions"].as_array().unwrap() {
        let took = region["duration_seconds"].as_f64().unwrap();
        assert!(took >= 0.4, "{region}");
    }
}

/// `recover` is drawn live too: its rollback's elapsed time ticks, then "rolled back" and its
/// verification.
#[test]
fn a_terminal_shows_recover_live() {
    let mut p = rollback_failed_in_lhr();
    p.env("ROLLBACK_SLEEP", "3");
    let Some(tty) = in_terminal(&p, &["recover", "--yes"]) else {
        return;
    };
    let time_of = |screen: &str| -> Option<String> {
        screen
            .lines()
            .find(|l| l.contains(" lhr ") && l.contains("rolling back"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    };
    let first = tty.wait_for("lhr rolling back", Duration::from_secs(30), |s| {
        time_of(s).is_some()
    });
    let before = time_of(&first);
    tty.wait_for("the elapsed time to move", Duration::from_secs(3), |s| {
        time_of(s).is_some_and(|t| Some(&t) != before.as_ref())
    });
    let done = tty.wait_for("the end", Duration::from_secs(30), |s| s.contains("[exit "));
    assert!(done.contains("[exit 0]"), "{done}");
    assert!(
        done.lines()
            .any(|l| l.contains("✓ lhr") && l.contains("rolled back to v2")),
        "{done}"
    );
    assert_eq!(p.live("lhr"), "v2");
}

/// Was: the Ctrl-C notice was written, then wiped by the next redraw of the bars.
#[test]
fn the_ctrl_c_notice_stays_on_screen_through_the_rollback() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("SETTLE_SLEEP", "20")
        .env("ROLLBACK_SLEEP", "4");
    let Some(tty) = in_terminal(&p, &["deploy"]) else {
        return;
    };
    tty.wait_for("the canary deploying", Duration::from_secs(30), |s| {
        s.contains("deploying") && s.contains("lhr")
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !p.calls().iter().any(|c| c.starts_with("deploy lhr")) {
        assert!(std::time::Instant::now() < deadline, "lhr never deployed");
        std::thread::sleep(Duration::from_millis(20));
    }
    tty.send(&["C-c"]);
    tty.wait_for("the notice", Duration::from_secs(10), |s| {
        s.contains("send it again to abandon the rollback")
    });
    // Watched for 2 s of redraws while the rollback runs: it is never erased.
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        let screen = tty.screen();
        assert!(
            screen.contains("send it again to abandon the rollback"),
            "the notice was erased:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = tty.wait_for("the end", Duration::from_secs(60), |s| s.contains("[exit "));
    assert!(done.contains("[exit 130]"), "{done}");
    assert!(
        done.contains("send it again to abandon the rollback"),
        "{done}"
    );
    // Said as what it was: a cancel, not a failure, and not "cancelled: cancelled".
    assert!(done.contains("stage canary cancelled"), "{done}");
    assert!(!done.contains("stage canary failed"), "{done}");
    assert!(
        done.contains("deploy cancelled: stopped by SIGINT; rolled back lhr"),
        "{done}"
    );
}

/// Was: the summary table was 81 columns wide and wrapped on an 80-column terminal.
#[test]
fn the_summary_table_fits_80_columns() {
    let mut p = exec_project(THREE_STAGES);
    p.env("FAIL_GATE", "ewr").env("FAIL_ROLLBACK", "nrt");
    let r = p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let table: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("STAGE"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(table.len() > 3, "{}", r.stdout);
    for line in table {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}

/// Was: `history` had no reason column, a first deploy's REGIONS cell was blank, and names were
/// cut even when piped. `--kind deploy` is one line per deploy.
#[test]
fn history_says_what_happened_one_line_per_deploy() {
    let p = deployed_then_rolled_back();
    let r = p
        .run(&["history", "--kind", "deploy"])
        .expect(code::SUCCESS);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and one line per deploy:\n{}",
        r.stdout
    );
    assert!(lines[0].ends_with("REASON"), "{}", lines[0]);
    assert!(lines[1].contains("rolled_back"), "{}", lines[1]);
    assert!(
        lines[1].contains("stage canary failed (nrt: gate health tripped"),
        "the reason: {}",
        lines[1]
    );
    assert!(lines[2].contains("success"), "{}", lines[2]);
    // The first deploy names its regions, and nothing is cut on a pipe.
    assert!(lines[2].contains("lhr,nrt,ewr,ord,fra"), "{}", lines[2]);
    assert!(lines[2].contains("canary,primary,full"), "{}", lines[2]);
}

/// On a terminal the history table is cut to the terminal's width (REASON takes the rest).
#[test]
fn history_on_a_terminal_fits_its_width() {
    let p = deployed_then_rolled_back();
    let Some(tty) = in_terminal(&p, &["history"]) else {
        return;
    };
    let screen = tty.wait_for("the table", Duration::from_secs(20), |s| {
        s.contains("[exit 0]")
    });
    let table: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("TIME"))
        .take_while(|l| !l.starts_with("[exit"))
        .collect();
    assert!(table[0].trim_end().ends_with("REASON"), "{screen}");
    assert!(table.len() > 5, "{screen}");
    for line in &table {
        assert!(line.trim_end().chars().count() <= 120, "{line}");
    }
    assert!(
        table
            .iter()
            .any(|l| l.contains("stage canary failed") && l.trim_end().ends_with('…')),
        "a long reason is cut to the width:\n{screen}"
    );
}

/// Was: the dry run omitted the `current` reads and the gates' headers, and listed rollback
/// targets for a `continue` stage, which runs nothing on failure.
#[test]
fn the_dry_run_is_exact_about_reads_failures_and_gates() {
    let config = THREE_STAGES
        .replace(
            "[defaults]",
            "[gate.api]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/{region}/health\"\n\
             headers = { Authorization = \"Bearer ghp_s3cr3t-token-value\" }\n\n[defaults]",
        )
        .replacen("gates = [\"health\"]", "gates = [\"health\", \"api\"]", 1);
    let mut p = exec_project(&config);
    p.env("GITHUB_TOKEN", "ghp_s3cr3t-token-value");
    let r = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS);
    let out = &r.stdout;
    assert!(out.contains("reads what runs now"), "{out}");
    for region in ["lhr", "nrt", "ewr", "ord", "fra"] {
        assert!(out.contains(&format!("$ ./current.sh {region}")), "{out}");
    }
    // `full` continues on failure: nothing runs, no targets.
    let full = &out[out.find("3. full").expect("stage 3")..];
    assert!(full.contains("on failure: nothing runs"), "{full}");
    assert!(!full.contains("rollback targets"), "{full}");
    assert!(!full.contains("on failure: $"), "{full}");
    // `primary` rolls back every region changed so far.
    let primary = &out[out.find("2. primary").unwrap()..out.find("3. full").unwrap()];
    for region in ["lhr", "nrt", "ewr"] {
        assert!(
            primary.contains(&format!("on failure: $ ./rollback.sh {region} v1")),
            "{primary}"
        );
    }
    let json = p
        .run(&["deploy", "--dry-run", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(
        json["current_reads"].as_array().map(Vec::len),
        Some(5),
        "{json}"
    );
    // The gate's header is shown, its secret value redacted.
    assert!(out.contains("header Authorization: Bearer ***"), "{out}");
    assert!(!out.contains("ghp_s3cr3t"), "{out}");
}

/// Was: in `status --live`, a long state (`rollback_failed`) pushed the LIVE column out of line.
#[test]
fn status_live_keeps_its_columns_in_line() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("BAD_VERSION", "v3")
        .env("FAIL_GATE", "ewr")
        .env("FAIL_ROLLBACK", "nrt");
    p.run(&["deploy"]).expect(code::ROLLBACK_FAILED);
    let r = p.run(&["status", "--live"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("REGION"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let at = lines[header].find("LIVE").expect("a LIVE column");
    let rows: Vec<&str> = lines[header + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with(' '))
        .copied()
        .collect();
    assert_eq!(rows.len(), 5, "{}", r.stdout);
    assert!(
        rows.iter().any(|l| l.contains("rollback_failed")),
        "{}",
        r.stdout
    );
    for row in rows {
        assert!(
            row.len() > at && row[..at].ends_with(' ') && !row[at..].starts_with(' '),
            "LIVE out of line at {at}:\n{}\n{row}",
            lines[header]
        );
    }
}

/// What people see, as reviewed snapshots: a change in any of these is a diff to look at.
fn seen_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"[0-9A-HJKMNP-TV-Z]{26}", "[ULID]"),
        (r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z", "[TS]"),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "[TIME]"),
        (r"\b\d+(\.\d+)?(ms|s|m\d\d|m\d\ds|h\d\d) ago\b", "[AGO]"),
        (r"\b\d+\.\d+s\b", "[DUR]"),
        (r"\b\d+ ms\b", "[MS]"),
        (r"\b\d+s\b", "[S]"),
    ]
}

#[test]
fn what_people_see_after_a_rolled_back_deploy() {
    let p = deployed_then_rolled_back();
    let status = p.run(&["status"]).expect(code::SUCCESS).stdout;
    // One line per deploy (the gate records of parallel regions land in any order).
    let history = p
        .run(&["history", "--kind", "deploy"])
        .expect(code::SUCCESS)
        .stdout;
    let dry = p.run(&["deploy", "--dry-run"]).expect(code::SUCCESS).stdout;
    let rollback_dry = p
        .run(&["rollback", "--dry-run", "--region", "ewr"])
        .expect(code::SUCCESS)
        .stdout;
    insta::with_settings!({filters => seen_filters()}, {
        insta::assert_snapshot!("status", status);
        insta::assert_snapshot!("history", history);
        insta::assert_snapshot!("deploy_dry_run", dry);
        insta::assert_snapshot!("rollback_dry_run", rollback_dry);
    });
}

/// What `recover` and a manual `rollback` answer on stdout: the summary of each region.
#[test]
fn what_people_see_of_recover_and_rollback() {
    let p = rollback_failed_in_lhr();
    let recover = p.run(&["recover", "--yes"]).expect(code::SUCCESS).stdout;
    let rollback = p
        .run(&["rollback", "--yes", "--region", "ewr"])
        .expect(code::SUCCESS)
        .stdout;
    insta::with_settings!({filters => seen_filters()}, {
        insta::assert_snapshot!("recover", recover);
        insta::assert_snapshot!("rollback", rollback);
    });
}

/// The story without what runs concurrently with it in an order no test can fix: the
/// notifications (delivered by their own thread) are left out, and commands started together
/// (one per region, in parallel) are put in order of their text.
fn without_notifications(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.contains("notified ")).collect();
    let is_command = |l: &str| l.contains("  ran `") || l.contains("| ran `");
    let after_time = |l: &str| l.split_once("ran `").map(|x| x.1).unwrap_or("").to_string();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len() && is_command(lines[j]) {
            j += 1;
        }
        lines[i..j].sort_by_key(|l| after_time(l));
        i = j.max(i + 1);
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn explain_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"[0-9A-HJKMNP-TV-Z]{26}", "[ULID]"),
        (r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b", "[T]"),
        (r"\b\d{2}:\d{2}:\d{2}\b", "[HMS]"),
        (r"\b\d+ ms\b", "[MS]"),
        (r"\b\d+\.\ds\b", "[S]"),
    ]
}

#[test]
fn explain_tells_a_rolled_back_deploy() {
    let p = deployed_then_rolled_back();
    let human = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    let md = p
        .run(&["explain", "last", "--md"])
        .expect(code::SUCCESS)
        .stdout;
    let json = p
        .run(&["explain", "--format", "json"])
        .expect(code::SUCCESS)
        .json();
    assert_eq!(json["status"], "rolled_back");
    assert!(json["next"].is_null(), "{json}");
    assert!(
        human.contains("notified P0 \"deploy of demo v3 failed\""),
        "{human}"
    );
    insta::with_settings!({filters => explain_filters()}, {
        insta::assert_snapshot!("explain_rolled_back", without_notifications(&human));
        insta::assert_snapshot!("explain_rolled_back_md", without_notifications(&md));
    });
}

#[test]
fn explain_tells_a_partial_deploy_and_what_to_run() {
    let mut p = exec_project(THREE_STAGES);
    p.env("SHIPGATE_ACTOR", "ops").env("FAIL_GATE", "fra");
    p.run(&["deploy"]).expect(code::PARTIAL);
    let human = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    assert!(
        human.contains("next: shipgate rollback --region fra"),
        "{human}"
    );
    insta::with_settings!({filters => explain_filters()}, {
        insta::assert_snapshot!("explain_partial", without_notifications(&human));
    });
    // By id, the earlier deploy too; an unknown id is exit 2.
    let id = p.kind("deploy").last().unwrap()["deploy_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_id = p.run(&["explain", &id]).expect(code::SUCCESS).stdout;
    assert_eq!(by_id, human);
    let r = p.run(&["explain", "01NOSUCHDEPLOY"]).expect(code::USAGE);
    assert!(
        r.stderr.contains("no deploy `01NOSUCHDEPLOY`"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_tells_a_cancelled_deploy_and_says_recover() {
    let mut p = exec_project(THREE_STAGES);
    p.run(&["deploy"]).expect(code::SUCCESS);
    p.env("TEST_VERSION", "v3")
        .env("SETTLE_SLEEP", "20")
        .env("FAIL_ROLLBACK", "lhr");
    let child = p
        .command(&["deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.live("lhr") != "v3" {
        assert!(std::time::Instant::now() < deadline, "lhr never deployed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory-safety preconditions; the child is ours.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code::ROLLBACK_FAILED),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let human = p.run(&["explain"]).expect(code::SUCCESS).stdout;
    assert!(human.contains(": rollback_failed"), "{human}");
    assert!(human.contains("signal: received SIGINT"), "{human}");
    assert!(
        human.contains("automatic rollback failed: rolled back nrt → v2; failed in lhr"),
        "{human}"
    );
    assert!(human.contains("next: shipgate recover "), "{human}");
    insta::with_settings!({filters => explain_filters()}, {
        insta::assert_snapshot!("explain_cancelled", without_notifications(&human));
    });
}
