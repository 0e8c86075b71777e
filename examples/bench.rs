//! What shipgate costs at any size of history, every case beside its comparison, in one run.
//!
//! ```text
//! cargo run --release --example bench                       # 100k, 1M and 10M records
//! cargo run --release --example bench -- --sizes 100k,1m --runs 5 --dir /tmp/shipgate-bench
//! ```
//!
//! It builds the release `shipgate` (through `cargo`), generates hash-chained histories of each
//! size once under `--dir` (`tests/common/synthetic.rs`: 15 records per deploy over three
//! stages and seven regions; ~440 bytes a record, so 10M is ~4.4 GB), and runs every case
//! `--runs` times, each run of a case interleaved with its comparison (so both see the same
//! machine), reporting medians, the ratio, the target of issue 17 and the peak RSS of the
//! slowest-memory run. "Cold" runs evict the files' pages first (`posix_fadvise DONTNEED`: no
//! root needed). The printed table is the README's Performance section.

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One run: wall time and the child's peak resident set.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_mb: f64,
}

/// Runs `cmd` to the end, output discarded; wall time and peak RSS from `wait4` (which reaps
/// the child: `Child::wait` would not return its rusage).
#[allow(clippy::zombie_processes)]
fn sample(mut cmd: Command) -> Sample {
    // Output to a file, not /dev/null: GNU grep stops at the first match when it sees its
    // output is /dev/null.
    let out = std::env::temp_dir().join(format!("shipgate-bench-{}.out", std::process::id()));
    let file = std::fs::File::create(&out).expect("output file");
    cmd.stdout(file).stderr(Stdio::null()).stdin(Stdio::null());
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) < 2,
        "{cmd:?} failed: status {status}"
    );
    Sample {
        secs,
        rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    rss_mb: f64,
}

fn stats(samples: &[Sample]) -> Stats {
    let mut t: Vec<f64> = samples.iter().map(|s| s.secs).collect();
    t.sort_by(f64::total_cmp);
    Stats {
        median: t[t.len() / 2],
        rss_mb: samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max),
    }
}

/// Runs each of `cmds` once per round, `runs` rounds (interleaved), after `before` each time.
fn interleaved(runs: usize, before: &dyn Fn(), cmds: &[&dyn Fn() -> Command]) -> Vec<Stats> {
    let mut all = vec![Vec::new(); cmds.len()];
    for _ in 0..runs {
        for (i, cmd) in cmds.iter().enumerate() {
            before();
            all[i].push(sample(cmd()));
        }
    }
    all.iter().map(|s| stats(s)).collect()
}

/// A row of the table.
struct Row {
    case: String,
    size: String,
    ours: Stats,
    against: Option<(String, Stats)>,
    target: String,
    met: Option<bool>,
}

fn ms(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

fn print(rows: &[Row]) {
    println!("| case | records | shipgate | peak RSS | comparison | ratio | target | |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let (against, ratio) = match &r.against {
            Some((what, s)) => (
                format!("{what} {}", ms(s.median)),
                format!("{:.2}×", r.ours.median / s.median),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "| {} | {} | {} | {:.1} MB | {} | {} | {} | {} |",
            r.case,
            r.size,
            ms(r.ours.median),
            r.ours.rss_mb,
            against,
            ratio,
            r.target,
            match r.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            }
        );
    }
}

/// `shipgate args…` run in `dir`.
fn shipgate_in(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .args(args)
        .env("SHIPGATE_NO_PROGRESS", "1");
    c
}

/// A comparison: `program args… file`.
fn tool(program: &str, args: &[&str], file: &Path) -> Command {
    let mut c = Command::new(program);
    c.args(args).arg(file);
    c
}

/// Drops a file's pages from the page cache (clean pages only: the file is synced first).
fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
        // SAFETY: a valid descriptor; the call only advises the kernel.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn parse_size(s: &str) -> u64 {
    let s = s.trim().to_ascii_lowercase();
    let (n, mult) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1_000),
        Some(b'm') => (&s[..s.len() - 1], 1_000_000),
        _ => (&s[..], 1),
    };
    n.parse::<u64>().expect("a size like 100k, 1m, 10m") * mult
}

fn label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    runs: usize,
    rows: Vec<Row>,
    /// Findings that are no timing (bytes), printed under the table.
    notes: Vec<String>,
}

impl Bench {
    fn shipgate(&self, state: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        // No pipeline.toml there: the history commands read the state directory alone.
        c.current_dir(&self.dir)
            .arg("--state-dir")
            .arg(state)
            .args(args);
        c.env("SHIPGATE_NO_PROGRESS", "1")
            .env_remove("GITHUB_ACTIONS");
        c
    }

    /// A state directory holding `records` records (generated once, then reused).
    fn history(&self, records: u64) -> PathBuf {
        let state = self.dir.join(format!("h{}", label(records)));
        let done = state.join(".generated");
        if !done.exists() {
            std::fs::create_dir_all(&state).unwrap();
            let _ = std::fs::remove_file(state.join("status.json"));
            let t = Instant::now();
            let s = synthetic::write_history(
                &state.join("history.jsonl"),
                records,
                synthetic::Options::default(),
            );
            eprintln!(
                "generated {} records ({} deploys) in {:.1} s",
                s.records,
                s.deploys,
                t.elapsed().as_secs_f64()
            );
            std::fs::write(&done, b"").unwrap();
        }
        // The first `status` folds history into status.json once; every later one reads it.
        sample(self.shipgate(&state, &["status"]));
        state
    }

    fn row(&mut self, case: &str, size: &str, s: &[Stats], against: Option<&str>, target: Target) {
        let ours = s[0];
        let other = against.map(|a| (a.to_string(), s[1]));
        let met = target.check(ours, other.as_ref().map(|o| o.1));
        self.rows.push(Row {
            case: case.into(),
            size: size.into(),
            ours,
            against: other,
            target: target.describe(),
            met,
        });
    }

    fn history_cases(&mut self, records: u64) {
        let state = self.history(records);
        let size = label(records);
        let file = state.join("history.jsonl");
        let big = records >= 1_000_000;
        let no_evict = || {};
        let status_json = state.join("status.json");

        let s = interleaved(
            self.runs,
            &no_evict,
            &[&|| self.shipgate(&state, &["status"]), &|| {
                self.shipgate(&state, &["history", "--last", "20"])
            }],
        );
        let target = if big {
            Target::All(vec![
                Target::Under(0.020),
                Target::Ratio(3.0),
                Target::Rss(20.0),
            ])
        } else {
            Target::None
        };
        self.row(
            "`status` (warm)",
            &size,
            &s,
            Some("`history --last 20`"),
            target,
        );
        let s = interleaved(
            self.runs,
            &no_evict,
            &[&|| self.shipgate(&state, &["status"]), &|| {
                tool("jq", &["."], &status_json)
            }],
        );
        self.row(
            "`status` (warm)",
            &size,
            &s,
            Some("`jq . status.json`"),
            Target::None,
        );

        // Bounded reads: the newest records only, whatever the size.
        for (case, args) in [
            ("`history --last 20`", ["--last", "20"]),
            ("`history --since 1h`", ["--since", "1h"]),
        ] {
            let s = interleaved(
                self.runs,
                &no_evict,
                &[
                    &|| {
                        let mut all = vec!["history", "--format", "jsonl"];
                        all.extend(args);
                        self.shipgate(&state, &all)
                    },
                    &|| tool("tail", &["-n", "20"], &file),
                ],
            );
            self.row(case, &size, &s, Some("`tail -n 20`"), Target::Rss(20.0));
        }

        let s = interleaved(
            self.runs,
            &no_evict,
            &[&|| self.shipgate(&state, &["history", "--stats"])],
        );
        let target = match records {
            1_000_000 => Target::All(vec![Target::Under(1.5), Target::Rss(20.0)]),
            _ => Target::Rss(20.0),
        };
        self.row("`history --stats`", &size, &s, None, target);

        let s = interleaved(
            self.runs,
            &no_evict,
            &[&|| self.shipgate(&state, &["history", "verify"]), &|| {
                tool("openssl", &["dgst", "-sha256"], &file)
            }],
        );
        self.row(
            "`history verify`",
            &size,
            &s,
            Some("`openssl dgst -sha256`"),
            Target::All(vec![Target::Ratio(1.5), Target::Rss(20.0)]),
        );

        if records <= 1_000_000 {
            let cold = || evict(&file);
            let s = interleaved(
                self.runs,
                &cold,
                &[
                    &|| {
                        self.shipgate(
                            &state,
                            &["history", "--status", "failed", "--format", "jsonl"],
                        )
                    },
                    &|| tool("grep", &["-c", "\"failed\""], &file),
                ],
            );
            self.row(
                "full scan, cold (`history --status failed`)",
                &size,
                &s,
                Some("`grep -c` cold"),
                if records == 1_000_000 {
                    Target::Ratio(1.5)
                } else {
                    Target::None
                },
            );
        }
    }

    /// A scratch exec pipeline: `stages` of `regions` each, deploys sleeping `sleep` seconds.
    fn pipeline(&self, name: &str, stages: &[usize], sleep: &str) -> PathBuf {
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let script = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(
            "deploy.sh",
            &format!("#!/bin/sh\nsleep {sleep}\nprintf '%s\\n' \"$2\" > \"$(dirname \"$0\")/state/$1\"\n"),
        );
        let mut toml = String::from(
            "[app]\nname = \"bench\"\n[target]\nadapter = \"exec\"\n[target.exec]\n\
             deploy = [\"./deploy.sh\", \"{region}\", \"{version}\"]\n\
             [state]\ndir = \".shipgate\"\n[defaults]\nbake = \"0s\"\n",
        );
        let mut n = 0;
        for (i, regions) in stages.iter().enumerate() {
            let list: Vec<String> = (0..*regions)
                .map(|_| {
                    n += 1;
                    format!("\"r{n}\"")
                })
                .collect();
            toml.push_str(&format!(
                "[[stage]]\nname = \"s{i}\"\nregions = [{}]\n",
                list.join(", ")
            ));
        }
        std::fs::write(dir.join("pipeline.toml"), toml).unwrap();
        dir
    }

    fn in_dir(&self, dir: &Path, args: &[&str]) -> Command {
        shipgate_in(&self.bin, dir, args)
    }

    fn startup_cases(&mut self) {
        let dir = self.pipeline("startup", &[2, 1, 4], "0");
        let s = interleaved(
            self.runs * 2,
            &|| {},
            &[&|| self.in_dir(&dir, &["validate"]), &|| {
                self.in_dir(&dir, &["--version"])
            }],
        );
        let t = Target::All(vec![Target::Under(0.015), Target::Rss(20.0)]);
        self.row(
            "`validate` (7 regions, 3 stages)",
            "",
            &s,
            Some("`shipgate --version`"),
            t,
        );
        let s = interleaved(
            self.runs * 2,
            &|| {},
            &[
                &|| self.in_dir(&dir, &["deploy", "--dry-run", "--version", "v1"]),
                &|| self.in_dir(&dir, &["--version"]),
            ],
        );
        let t = Target::All(vec![Target::Under(0.015), Target::Rss(20.0)]);
        self.row(
            "`deploy --dry-run --version v1`",
            "",
            &s,
            Some("`shipgate --version`"),
            t,
        );
    }

    /// A deploy against the ideal: the same deploy commands, each stage's in parallel, run by
    /// a bare `sh` (`./deploy.sh r1 v & ./deploy.sh r2 v & wait`, stage after stage), so the
    /// commands' own cost (a shell and a `sleep` per region) is in both.
    fn deploy_cases(&mut self) {
        for (case, stages) in [
            ("deploy, 7 regions in 3 stages, 1 s each", vec![2, 1, 4]),
            ("deploy, 64 regions in 1 stage, 1 s each", vec![64]),
        ] {
            let dir = self.pipeline("deploy", &stages, "1");
            let mut script = String::new();
            let mut n = 0;
            for regions in &stages {
                for _ in 0..*regions {
                    n += 1;
                    script.push_str(&format!("./deploy.sh r{n} ideal & "));
                }
                script.push_str("wait; ");
            }
            let version = std::cell::Cell::new(0);
            let s = interleaved(
                self.runs,
                &|| {},
                &[
                    &|| {
                        version.set(version.get() + 1);
                        let v = format!("v{}", version.get());
                        self.in_dir(&dir, &["deploy", "--quiet", "--version", &v])
                    },
                    &|| {
                        let mut c = Command::new("sh");
                        c.current_dir(&dir).arg("-c").arg(&script);
                        c
                    },
                ],
            );
            let t = Target::All(vec![Target::Ratio(1.10), Target::Rss(20.0)]);
            self.row(
                case,
                "",
                &s,
                Some("the same commands run by `sh … & wait`"),
                t,
            );
        }
    }
}

/// `git -C dir args…`, output returned; panics on failure.
fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(bytes) = input {
        stdin.write_all(bytes).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes `history` to `remote`'s ledger branch in segments (the layout of
/// `src/ledger/segments.rs`) through `git fast-import`, one segment in memory at a time: the
/// bench's own peak RSS must stay small, since a child started with `vfork` inherits it as its
/// `ru_maxrss`.
fn fast_import(remote: &Path, history: &Path) {
    use std::io::{BufRead, Write};
    let mut child = Command::new("git")
        .current_dir(remote)
        .args(["fast-import", "--quiet"])
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut to_git = std::io::BufWriter::new(child.stdin.take().unwrap());
    let limit = shipgate::ledger::segments::SEGMENT_BYTES;
    let mut segment = Vec::with_capacity(limit);
    let mut count = 0;
    let mut blob = |segment: &mut Vec<u8>, count: &mut usize| {
        *count += 1;
        write!(to_git, "blob\nmark :{count}\ndata {}\n", segment.len()).unwrap();
        to_git.write_all(segment).unwrap();
        to_git.write_all(b"\n").unwrap();
        segment.clear();
    };
    let mut reader = std::io::BufReader::new(std::fs::File::open(history).unwrap());
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        if !segment.is_empty() && segment.len() + line.len() > limit {
            blob(&mut segment, &mut count);
        }
        segment.extend_from_slice(&line);
        line.clear();
    }
    if !segment.is_empty() {
        blob(&mut segment, &mut count);
    }
    to_git
        .write_all(b"commit refs/heads/shipgate/ledger\ncommitter bench <b@example.com> 0 +0000\ndata 9\ngenerated\n")
        .unwrap();
    for i in 0..count {
        let path = shipgate::ledger::segments::path_of("history.jsonl", i as u64);
        writeln!(to_git, "M 100644 :{} {path}", i + 1).unwrap();
    }
    drop(to_git);
    assert!(child.wait().unwrap().success(), "git fast-import failed");
}

impl Bench {
    /// A bare remote whose ledger branch holds `records` history records in segments (the
    /// layout of `src/ledger/segments.rs`, written with `git fast-import`), and a project
    /// cloned from it on the git store, its cache warmed (the first fetch downloads all).
    fn git_project(&self, records: u64) -> (PathBuf, PathBuf) {
        let root = self.dir.join(format!("git{}", label(records)));
        let _ = std::fs::remove_dir_all(&root);
        let (remote, project) = (
            root.join("remote.git"),
            self.pipeline_in(&root.join("project")),
        );
        std::fs::create_dir_all(&remote).unwrap();
        git(&remote, &["init", "-q", "--bare", "-b", "main"], None);
        let file = root.join("history.jsonl");
        synthetic::write_history(&file, records, synthetic::Options::default());
        fast_import(&remote, &file);
        std::fs::write(project.join(".gitignore"), "state/\n").unwrap();
        git(&project, &["init", "-q", "-b", "main"], None);
        git(&project, &["add", "-A"], None);
        git(&project, &["commit", "-q", "-m", "init"], None);
        git(
            &project,
            &["remote", "add", "origin", remote.to_str().unwrap()],
            None,
        );
        sample(self.in_dir(&project, &["status"]));
        (remote, project)
    }

    /// A 7-region, 3-stage exec pipeline in `dir` on the git store (`remote` origin).
    fn pipeline_in(&self, dir: &Path) -> PathBuf {
        let made = self.pipeline("git-template", &[2, 1, 4], "0");
        std::fs::create_dir_all(dir).unwrap();
        for f in ["pipeline.toml", "deploy.sh"] {
            std::fs::copy(made.join(f), dir.join(f)).unwrap();
        }
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let mut toml = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
        toml = toml.replace(
            "[state]\ndir = \".shipgate\"\n",
            "[state]\nstore = \"git\"\nremote = \"origin\"\n",
        );
        std::fs::write(dir.join("pipeline.toml"), toml).unwrap();
        dir.to_path_buf()
    }

    /// The git store: one append (`publish-event`) and one 7-region deploy at each size, each
    /// against the same at the smallest size (interleaved), and the remote's growth per append
    /// (uncompressed bytes of the objects the append added).
    fn git_cases(&mut self, sizes: &[u64]) {
        let projects: Vec<(u64, PathBuf, PathBuf)> = sizes
            .iter()
            .map(|&n| {
                let (remote, project) = self.git_project(n);
                (n, remote, project)
            })
            .collect();
        let (base_n, _, base) = projects[0].clone();
        let n = std::cell::Cell::new(0u64);
        let bin = self.bin.clone();
        let append = |dir: &Path| {
            n.set(n.get() + 1);
            let sha = format!("bench{}", n.get());
            shipgate_in(
                &bin,
                dir,
                &[
                    "publish-event",
                    "--platform",
                    "render",
                    "--event-type",
                    "success",
                    "--commit-sha",
                    &sha,
                ],
            )
        };
        let deploy = |dir: &Path| {
            n.set(n.get() + 1);
            let v = format!("v{}", n.get());
            shipgate_in(&bin, dir, &["deploy", "--quiet", "--version", &v])
        };
        for (records, remote, project) in &projects[1..] {
            let size = label(*records);
            let against = format!("the same at {}", label(base_n));
            let s = interleaved(self.runs, &|| {}, &[&|| append(project), &|| append(&base)]);
            let t = Target::All(vec![Target::Ratio(1.5), Target::Rss(20.0)]);
            self.row("git store: one append", &size, &s, Some(&against), t);
            let s = interleaved(self.runs, &|| {}, &[&|| deploy(project), &|| deploy(&base)]);
            let t = Target::All(vec![Target::Ratio(2.0), Target::Rss(20.0)]);
            self.row("git store: 7-region deploy", &size, &s, Some(&against), t);
            let tip =
                || String::from_utf8(git(remote, &["rev-parse", "shipgate/ledger"], None)).unwrap();
            let before = tip();
            sample(append(project));
            let after = tip();
            let objects = git(
                remote,
                &[
                    "rev-list",
                    "--objects",
                    &format!("{}..{}", before.trim(), after.trim()),
                ],
                None,
            );
            let ids: Vec<u8> = String::from_utf8(objects)
                .unwrap()
                .lines()
                .flat_map(|l| format!("{}\n", l.split(' ').next().unwrap_or("")).into_bytes())
                .collect();
            let sizes = git(
                remote,
                &["cat-file", "--batch-check=%(objectsize)"],
                Some(&ids),
            );
            let grown: u64 = String::from_utf8(sizes)
                .unwrap()
                .split_whitespace()
                .map(|s| s.parse::<u64>().unwrap())
                .sum();
            self.notes.push(format!(
                "git store at {size} records: one append added {:.0} KiB of objects to the remote \
                 (target: the record plus one segment, at most 1 MiB)",
                grown as f64 / 1024.0
            ));
        }
    }
}

/// What a case must achieve (issue 17).
enum Target {
    None,
    /// Median at most this many seconds.
    Under(f64),
    /// At most this many times the comparison.
    Ratio(f64),
    /// Peak RSS at most this many MB.
    Rss(f64),
    All(Vec<Target>),
}

impl Target {
    fn check(&self, ours: Stats, other: Option<Stats>) -> Option<bool> {
        match self {
            Target::None => None,
            Target::Under(s) => Some(ours.median <= *s),
            Target::Ratio(r) => other.map(|o| ours.median <= r * o.median),
            Target::Rss(mb) => Some(ours.rss_mb <= *mb),
            Target::All(all) => Some(all.iter().all(|t| t.check(ours, other) != Some(false))),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::None => String::new(),
            Target::Under(s) => format!("≤ {}", ms(*s)),
            Target::Ratio(r) => format!("≤ {r}×"),
            Target::Rss(mb) => format!("≤ {mb} MB"),
            Target::All(all) => all
                .iter()
                .map(Target::describe)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

fn main() {
    let mut sizes = vec![100_000, 1_000_000, 10_000_000];
    let mut runs = 5;
    let mut dir = std::env::temp_dir().join("shipgate-bench");
    let mut only: Option<String> = None;
    let mut git_sizes = vec![1_000, 10_000, 100_000];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .expect("--sizes 100k,1m")
                    .split(',')
                    .map(parse_size)
                    .collect()
            }
            "--runs" => runs = args.next().expect("--runs N").parse().expect("a number"),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir PATH")),
            "--only" => only = args.next(),
            "--git-sizes" => {
                git_sizes = args
                    .next()
                    .expect("--git-sizes 1k,100k")
                    .split(',')
                    .map(parse_size)
                    .collect()
            }
            _ => panic!(
                "usage: bench [--sizes 100k,1m,10m] [--git-sizes 1k,10k,100k] [--runs 5] \
                 [--dir PATH] [--only history|startup|deploy|git]"
            ),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--locked", "--bin", "shipgate"])
        .status()
        .expect("run cargo");
    assert!(built.success(), "cargo build --release failed");
    std::fs::create_dir_all(&dir).unwrap();
    let mut bench = Bench {
        bin: root.join("target/release/shipgate"),
        dir,
        runs,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let wants = |what: &str| only.as_deref().is_none_or(|o| o == what);
    if wants("startup") {
        bench.startup_cases();
    }
    if wants("history") {
        for &n in &sizes {
            bench.history_cases(n);
        }
    }
    if wants("deploy") {
        bench.deploy_cases();
    }
    if wants("git") {
        bench.git_cases(&git_sizes);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "\n{} cores ({cpu}), release build, median of {runs} interleaved runs\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print(&bench.rows);
    for note in &bench.notes {
        println!("\n{note}");
    }
}
