//! Measures how long one stage of N regions takes when each region's deploy takes 1 s: with
//! regions deployed in parallel it should stay near 1 s whatever N is, plus gate and bookkeeping
//! overhead. Also times an empty-gate, instant-deploy pipeline to show shipgate's own overhead.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench_parallel
//! ```
//!
//! It builds a scratch exec pipeline in a temp dir (sh scripts, a command gate) and runs the
//! release `shipgate` binary (`target/release/shipgate`) several times per case.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEPLOY: &str = "#!/bin/sh\nsleep \"${DEPLOY_SLEEP:-0}\"\nprintf '%s\\n' \"$2\" > \"$(dirname \"$0\")/state/$1\"\n";
const CURRENT: &str = "#!/bin/sh\ncat \"$(dirname \"$0\")/state/$1\" 2>/dev/null\nexit 0\n";
const HEALTH: &str = "#!/bin/sh\nexit 0\n";

fn config(regions: usize, gates: bool) -> String {
    let list: Vec<String> = (0..regions).map(|i| format!("\"r{i}\"")).collect();
    format!(
        "[app]\nname = \"bench\"\n[target]\nadapter = \"exec\"\n[target.exec]\ndeploy = [\"./deploy.sh\", \"{{region}}\", \"{{version}}\"]\ncurrent = [\"./current.sh\", \"{{region}}\"]\n[[stage]]\nname = \"all\"\nregions = [{}]\ngates = [{}]\n[gate.ok]\ntype = \"command\"\nrun = [\"./health.sh\", \"{{region}}\"]\ninterval = \"100ms\"\n",
        list.join(", "),
        if gates { "\"ok\"" } else { "" }
    )
}

fn script(dir: &Path, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn time_deploy(bin: &Path, regions: usize, sleep: u32, gates: bool, runs: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), config(regions, gates)).unwrap();
    script(dir.path(), "deploy.sh", DEPLOY);
    script(dir.path(), "current.sh", CURRENT);
    script(dir.path(), "health.sh", HEALTH);
    let mut times = Vec::new();
    for i in 0..runs {
        let start = Instant::now();
        let status = Command::new(bin)
            .current_dir(dir.path())
            .args(["deploy", "--quiet", "--version", &format!("v{i}")])
            .env("DEPLOY_SLEEP", sleep.to_string())
            .env("SHIPGATE_NO_PROGRESS", "1")
            .status()
            .unwrap();
        assert!(status.success(), "deploy failed");
        times.push(start.elapsed());
    }
    times.sort();
    times
}

fn main() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/shipgate");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    println!("{:<44} {:>8} {:>8} {:>8}", "case", "min", "median", "max");
    for (label, regions, sleep, gates) in [
        ("1 region, 1 s deploy, 1 command gate", 1, 1, true),
        ("4 regions, 1 s deploy each, 1 command gate", 4, 1, true),
        ("16 regions, 1 s deploy each, 1 command gate", 16, 1, true),
        ("4 regions, instant deploy, no gates", 4, 0, false),
    ] {
        let t = time_deploy(&bin, regions, sleep, gates, 5);
        println!(
            "{label:<44} {:>7.0}ms {:>7.0}ms {:>7.0}ms",
            t[0].as_secs_f64() * 1e3,
            t[t.len() / 2].as_secs_f64() * 1e3,
            t[t.len() - 1].as_secs_f64() * 1e3
        );
    }
}
