//! A real Alertmanager on loopback, for the alertmanager gate tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Alertmanager binary (Debian's `prometheus-alertmanager`), if installed.
pub fn alertmanager_bin() -> Option<PathBuf> {
    ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A running Alertmanager, killed when dropped.
pub struct Alertmanager {
    child: std::process::Child,
    pub url: String,
    log: PathBuf,
}

impl Alertmanager {
    /// Starts `bin` on a free loopback port with storage in `dir`, clustering off.
    pub fn start(bin: &Path, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let log = dir.join("alertmanager.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // If the test process dies without running Drop, the kernel kills Alertmanager too.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let am = Alertmanager {
            child: cmd.spawn().expect("start alertmanager"),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let ready = format!("{}/-/ready", am.url);
        super::process::wait_for("alertmanager ready", Duration::from_secs(30), |last| {
            match ureq::get(&ready).call() {
                Ok(r) if r.status() == 200 => Some(()),
                other => {
                    *last = format!("{other:?}; log: {}", am.log_tail());
                    None
                }
            }
        });
        am
    }

    /// Posts alerts (a JSON array, Alertmanager's API v2) as Prometheus would.
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let resp = ureq::post(&format!("{}/api/v2/alerts", self.url))
            .send_json(alerts)
            .expect("post alerts");
        assert_eq!(resp.status(), 200);
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
