//! A real Prometheus on loopback for the tests: scraping a test exporter, or serving series
//! backfilled with `promtool tsdb create-blocks-from openmetrics` (deterministic data at any
//! time, past or a little ahead).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Kills Prometheus when the test ends, pass or panic.
pub struct PrometheusGuard {
    child: std::process::Child,
    log: PathBuf,
    pub url: String,
}

impl PrometheusGuard {
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(name: &str) -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin").join(name);
    if fixed.exists() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The prometheus binary; `None` when `SHIPGATE_SKIP_PROMETHEUS=1` says to skip (said on
/// stderr). Not installed otherwise is a failure, never a silent skip.
pub fn prometheus_bin(what: &str) -> Option<PathBuf> {
    if std::env::var("SHIPGATE_SKIP_PROMETHEUS").as_deref() == Ok("1") {
        eprintln!("SHIPGATE_SKIP_PROMETHEUS=1: skipping {what}");
        return None;
    }
    Some(find("prometheus").unwrap_or_else(|| {
        panic!(
            "prometheus is not installed (looked for /usr/bin/prometheus and on PATH): install \
             it (Debian: apt-get install prometheus) or set SHIPGATE_SKIP_PROMETHEUS=1 to skip \
             {what} knowingly"
        )
    }))
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts Prometheus with its data in `dir/data`, scraping `target` (host:port) every second
/// when given, and waits until it is ready.
pub fn start_prometheus(bin: &Path, dir: &Path, target: Option<&str>) -> PrometheusGuard {
    use std::os::unix::process::CommandExt;
    let port = closed_port();
    let config = dir.join("prom.yml");
    let scrape = match target {
        Some(t) => format!(
            "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{t}']\n"
        ),
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{scrape}"),
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    // If the test process dies without running the guard, the kernel kills Prometheus too.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start prometheus");
    let guard = PrometheusGuard {
        child,
        log,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = ureq::get(&format!("{}/-/ready", guard.url))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call()
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ready {
            return guard;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not become ready within 30 s; its log:\n{}",
            guard.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `openmetrics` (ending in `# EOF`) into TSDB blocks under `dir/data` with promtool,
/// for [`start_prometheus`] to serve.
pub fn backfill(dir: &Path, openmetrics: &str) {
    let promtool = find("promtool").expect("promtool is installed with prometheus");
    let input = dir.join("series.om");
    std::fs::write(&input, openmetrics).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir.join("data"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One counter series in OpenMetrics: `name{labels}` growing by `per_second` every second
/// over `[from, to]` (Unix seconds), for [`backfill`]. Several calls are concatenated under
/// one `# TYPE` line by the caller.
pub fn counter_samples(name: &str, labels: &str, per_second: f64, from: i64, to: i64) -> String {
    let mut out = String::new();
    for (i, t) in (from..=to).enumerate() {
        out.push_str(&format!(
            "{name}_total{{{labels}}} {} {t}\n",
            per_second * i as f64
        ));
    }
    out
}
