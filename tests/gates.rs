//! Gate probes against real servers on loopback: HTTP (tiny_http and raw sockets), DNS, TCP,
//! command gates, and a real Prometheus scraping an exporter the test drives.
//!
//! These call the library directly (`shipgate::gates::probe`), with gates parsed from
//! `pipeline.toml` text like a user writes them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shipgate::config::placeholder::Vars;
use shipgate::config::Gate;
use shipgate::exec::Cancel;
use shipgate::gates::{probe, ProbeCtx, ProbeResult};

use crate::common::http::{Reply, Server};
use crate::common::prometheus::{closed_port, prometheus_bin, start_prometheus};

/// Parses `[gate.g]` with `body` in a minimal pipeline, as `shipgate` would.
fn gate(body: &str) -> Gate {
    let text = format!(
        r#"
[app]
name = "web"

[target]
adapter = "exec"

[target.exec]
deploy = ["true"]

[[stage]]
name = "canary"
regions = ["lhr"]
gates = ["g"]

[gate.g]
{body}
"#
    );
    let config = shipgate::config::parse(Path::new("pipeline.toml"), &text, None)
        .unwrap_or_else(|e| panic!("config does not parse: {}", e.render(false)));
    config.gates["g"].clone()
}

fn vars(region: &str) -> Vars {
    Vars::new()
        .with("app", "web")
        .with("version", "v2")
        .with("previous_version", "v1")
        .with("region", region)
        .with("stage", "canary")
        .with("deploy_id", "01TESTDEPLOY")
}

fn run_in(gate: &Gate, region: &str, cwd: &Path) -> ProbeResult {
    let cancel = Cancel::new();
    let ctx = ProbeCtx::new(cwd.to_path_buf(), &cancel);
    probe(gate, &vars(region), &ctx)
}

fn run(gate: &Gate) -> ProbeResult {
    run_in(gate, "lhr", Path::new("."))
}

#[track_caller]
fn assert_fails_with(r: &ProbeResult, needle: &str) {
    eprintln!("probe detail: {}", r.detail);
    assert!(!r.pass, "expected a failed probe, got a pass: {}", r.detail);
    assert!(
        r.detail.contains(needle),
        "detail {:?} does not mention {needle:?}",
        r.detail
    );
    assert!(
        !r.detail.contains('\n'),
        "detail is not one line: {:?}",
        r.detail
    );
}

/// A raw server that reads one request and answers `raw` bytes, then closes the connection.
fn raw_server(raw: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream: TcpStream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(raw);
            let _ = stream.flush();
            drop(stream);
        }
    });
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------- http

#[test]
fn http_expected_status_and_body_pass() {
    let server = Server::fixed(200, r#"{"status":"ok"}"#);
    let g = gate(&format!(
        r#"type = "http"
url = "{}/health"
expect_status = [200]
body_contains = "ok"
max_latency = "2s""#,
        server.url
    ));
    let r = run(&g);
    assert!(r.pass, "{}", r.detail);
    assert!(r.detail.starts_with("HTTP 200 in "), "{}", r.detail);
    assert!(r.detail.ends_with(" ms"), "{}", r.detail);
}

#[test]
fn http_unexpected_status_fails_naming_the_status() {
    let server = Server::fixed(503, "upstream down");
    let g = gate(&format!("type = \"http\"\nurl = \"{}/health\"", server.url));
    let r = run(&g);
    assert_fails_with(&r, "HTTP 503 in ");
    assert_fails_with(&r, "(expected 2xx)");

    let server = Server::fixed(200, "ok");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/\"\nexpect_status = [204, 301]",
        server.url
    ));
    assert_fails_with(&run(&g), "HTTP 200 in");
    assert_fails_with(&run(&g), "(expected 204 or 301)");
}

#[test]
fn http_expected_non_2xx_status_passes() {
    let server = Server::fixed(404, "not here");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/\"\nexpect_status = [404]",
        server.url
    ));
    let r = run(&g);
    assert!(r.pass, "{}", r.detail);
}

#[test]
fn http_slow_response_past_timeout_fails() {
    // The server answers only after 20 s; the probe must give up long before (the bound leaves
    // a slow CI machine room, and still fails if the timeout is not applied).
    let server = Server::start(|_| Reply::new(200, "ok").delay(Duration::from_secs(20)));
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/health\"\ntimeout = \"300ms\"",
        server.url
    ));
    let start = Instant::now();
    let r = run(&g);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "the probe took {:?}, past its timeout",
        start.elapsed()
    );
    assert_fails_with(&r, "timeout 300ms");
}

#[test]
fn http_max_latency_exceeded_fails() {
    let server = Server::start(|_| Reply::new(200, "ok").delay(Duration::from_millis(300)));
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/\"\nmax_latency = \"100ms\"\ntimeout = \"5s\"",
        server.url
    ));
    assert_fails_with(&run(&g), "slower than max_latency 100ms");
}

#[test]
fn http_body_mismatch_fails() {
    let server = Server::fixed(200, r#"{"status":"degraded"}"#);
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/\"\nbody_contains = \"\\\"status\\\":\\\"ok\\\"\"",
        server.url
    ));
    assert_fails_with(&run(&g), "body does not contain");
}

#[test]
fn http_connection_refused_fails() {
    let port = closed_port();
    let g = gate(&format!(
        "type = \"http\"\nurl = \"http://127.0.0.1:{port}/\""
    ));
    let r = run(&g);
    assert_fails_with(&r, "connection refused");
    assert_fails_with(&r, &format!("GET http://127.0.0.1:{port}/"));
}

#[test]
fn http_server_closing_mid_headers_fails() {
    let url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Le");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{url}/\"\ntimeout = \"3s\""
    ));
    assert_fails_with(&run(&g), &format!("GET {url}/: "));
}

#[test]
fn http_server_closing_mid_body_fails() {
    let url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok, partial");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{url}/\"\nbody_contains = \"ok\"\ntimeout = \"3s\""
    ));
    assert_fails_with(&run(&g), "HTTP 200, then reading the body failed");
}

#[test]
fn http_garbage_answer_fails() {
    let url = raw_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{url}/\"\ntimeout = \"3s\""
    ));
    assert_fails_with(&run(&g), &format!("GET {url}/: "));
}

/// `/r/N` redirects to `/r/N+1`; `/r/<end>` answers 200.
fn redirect_server(end: u32) -> Server {
    Server::start(move |req| {
        let n: u32 = req.path.trim_start_matches("/r/").parse().unwrap_or(0);
        if n >= end {
            Reply::new(200, "ok")
        } else {
            Reply::new(302, "").header("Location", &format!("/r/{}", n + 1))
        }
    })
}

#[test]
fn http_redirects_are_followed_up_to_five() {
    let server = redirect_server(5);
    let g = gate(&format!("type = \"http\"\nurl = \"{}/r/0\"", server.url));
    let r = run(&g);
    assert!(r.pass, "{}", r.detail);
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn http_redirect_chain_longer_than_five_fails() {
    let server = redirect_server(1000);
    let g = gate(&format!("type = \"http\"\nurl = \"{}/r/0\"", server.url));
    assert_fails_with(&run(&g), "more than 5 redirects");
    assert!(
        server.requests().len() <= 7,
        "{} requests",
        server.requests().len()
    );
}

#[test]
fn http_templated_headers_and_url_reach_the_server() {
    let server = Server::fixed(200, "ok");
    let g = gate(&format!(
        r#"type = "http"
url = "{}/health?region={{region}}&v={{version}}"
headers = {{ "fly-prefer-region" = "{{region}}", "x-deploy" = "{{deploy_id}}" }}"#,
        server.url
    ));
    let r = run_in(&g, "nrt", Path::new("."));
    assert!(r.pass, "{}", r.detail);
    let req = &server.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/health?region=nrt&v=v2");
    assert_eq!(req.header("fly-prefer-region"), Some("nrt"));
    assert_eq!(req.header("x-deploy"), Some("01TESTDEPLOY"));
}

#[test]
fn http_method_is_sent() {
    let server = Server::fixed(200, "");
    let g = gate(&format!(
        "type = \"http\"\nurl = \"{}/\"\nmethod = \"HEAD\"",
        server.url
    ));
    assert!(run(&g).pass);
    assert_eq!(server.requests()[0].method, "HEAD");
}

#[test]
fn http_invalid_rendered_url_fails_without_panicking() {
    let g = gate("type = \"http\"\nurl = \"http://{region}.example/health\"");
    let r = run_in(&g, "l h r", Path::new("."));
    assert!(!r.pass, "{}", r.detail);
}

#[test]
fn http_details_are_redacted() {
    shipgate::redact::add_secret("gate-secret-4f9a1c");
    let port = closed_port();
    let g = gate(&format!(
        "type = \"http\"\nurl = \"http://127.0.0.1:{port}/health?token=gate-secret-4f9a1c\""
    ));
    let r = run(&g);
    assert_fails_with(&r, "token=***");
    assert!(!r.detail.contains("gate-secret-4f9a1c"), "{}", r.detail);
}

// ---------------------------------------------------------------- dns and tcp

#[test]
fn dns_localhost_resolves_to_loopback() {
    let g = gate("type = \"dns\"\nhost = \"localhost\"\naddresses = [\"127.0.0.1\"]");
    let r = run(&g);
    assert!(r.pass, "{}", r.detail);
    assert!(r.detail.contains("127.0.0.1"), "{}", r.detail);
}

#[test]
fn dns_missing_expected_address_fails() {
    let g = gate("type = \"dns\"\nhost = \"localhost\"\naddresses = [\"10.9.9.9\"]");
    assert_fails_with(&run(&g), "missing 10.9.9.9");
}

#[test]
fn dns_invalid_name_fails() {
    let g = gate("type = \"dns\"\nhost = \"{region}.shipgate-test.invalid\"\ntimeout = \"3s\"");
    assert_fails_with(&run(&g), "lhr.shipgate-test.invalid did not resolve");
}

#[test]
fn tcp_open_listener_passes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let g = gate(&format!("type = \"tcp\"\naddress = \"127.0.0.1:{port}\""));
    let r = run(&g);
    assert!(r.pass, "{}", r.detail);
    assert!(r
        .detail
        .starts_with(&format!("connected to 127.0.0.1:{port}")));
    let g = gate(&format!("type = \"tcp\"\naddress = \"localhost:{port}\""));
    assert!(run(&g).pass);
}

#[test]
fn tcp_closed_port_fails() {
    let port = closed_port();
    let g = gate(&format!("type = \"tcp\"\naddress = \"127.0.0.1:{port}\""));
    assert_fails_with(&run(&g), "connection refused");
}

// ---------------------------------------------------------------- command (needs exec::run)

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn command_gate_exit_zero_passes() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "smoke.sh", "#!/bin/sh\necho fine\nexit 0\n");
    let g = gate("type = \"command\"\nrun = [\"./smoke.sh\", \"{region}\"]");
    let r = run_in(&g, "lhr", dir.path());
    assert!(r.pass, "{}", r.detail);
    assert!(r.detail.starts_with("exit 0 in "), "{}", r.detail);
}

#[test]
fn command_gate_nonzero_exit_fails_with_the_output_tail() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "smoke.sh",
        "#!/bin/sh\necho checking >&2\necho \"db not ready in $1\" >&2\nexit 3\n",
    );
    let g = gate("type = \"command\"\nrun = [\"./smoke.sh\", \"{region}\"]");
    let r = run_in(&g, "nrt", dir.path());
    assert_fails_with(&r, "exit 3");
    assert_fails_with(&r, "db not ready in nrt");
}

#[test]
fn command_gate_gets_placeholders_as_env() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "smoke.sh",
        "#!/bin/sh\n[ \"$SHIPGATE_REGION\" = sin ] && [ \"$SHIPGATE_VERSION\" = v2 ] || { echo \"env: $SHIPGATE_REGION $SHIPGATE_VERSION\" >&2; exit 1; }\n",
    );
    let g = gate("type = \"command\"\nrun = [\"./smoke.sh\"]");
    let r = run_in(&g, "sin", dir.path());
    assert!(r.pass, "{}", r.detail);
}

#[test]
fn command_gate_timeout_fails() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "hang.sh", "#!/bin/sh\nsleep 30\n");
    let g = gate("type = \"command\"\nrun = [\"./hang.sh\"]\ntimeout = \"500ms\"");
    let start = Instant::now();
    let r = run_in(&g, "lhr", dir.path());
    assert!(!r.pass, "{}", r.detail);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn command_gate_missing_program_fails() {
    let dir = tempfile::tempdir().unwrap();
    let g = gate("type = \"command\"\nrun = [\"./no-such-smoke.sh\"]");
    let r = run_in(&g, "lhr", dir.path());
    assert_fails_with(&r, "no-such-smoke.sh");
}

// ---------------------------------------------------------------- a real Prometheus

/// An exporter whose counters grow linearly with time, so rates are steady whenever scraped:
/// lhr serves 100 ok/s and 10 errors/s (error rate 10/110 = 0.0909), nrt 100 ok/s and no
/// errors, ams no traffic at all (error rate 0/0 = NaN).
fn exporter() -> Server {
    let t0 = Instant::now();
    Server::start(move |req| {
        if req.path != "/metrics" {
            return Reply::new(404, "");
        }
        let s = t0.elapsed().as_secs_f64();
        let body = format!(
            "# TYPE http_requests_total counter\n\
             http_requests_total{{code=\"200\",region=\"lhr\"}} {}\n\
             http_requests_total{{code=\"500\",region=\"lhr\"}} {}\n\
             http_requests_total{{code=\"200\",region=\"nrt\"}} {}\n\
             http_requests_total{{code=\"500\",region=\"nrt\"}} 0\n\
             http_requests_total{{code=\"200\",region=\"ams\"}} 0\n\
             http_requests_total{{code=\"500\",region=\"ams\"}} 0\n",
            100.0 * s,
            10.0 * s,
            100.0 * s
        );
        Reply::new(200, &body).header("Content-Type", "text/plain; version=0.0.4")
    })
}

/// The per-region error rate of SPEC §2's example, over a short window.
const ERROR_RATE: &str = r#"sum by (region) (rate(http_requests_total{code=~"5..",region="{region}"}[5s])) / sum by (region) (rate(http_requests_total{region="{region}"}[5s]))"#;

fn prom_gate(url: &str, query: &str, thresholds: &str) -> Gate {
    gate(&format!(
        "type = \"prometheus\"\nurl = \"{url}\"\nquery = '{query}'\n{thresholds}\ntimeout = \"5s\""
    ))
}

#[test]
fn prometheus_gate_against_a_real_prometheus() {
    let Some(bin) = prometheus_bin("the real-Prometheus gate test") else {
        return;
    };
    let exporter = exporter();
    let dir = tempfile::tempdir().unwrap();
    let target = exporter.url.trim_start_matches("http://").to_string();
    let prom = start_prometheus(&bin, dir.path(), Some(&target));
    let url = prom.url.clone();

    // Wait until the 5 s window is full of samples: rate() divides by the whole window, so
    // lhr's 110 requests/s read low until then.
    let warm = prom_gate(
        &url,
        r#"sum(rate(http_requests_total{region="{region}"}[5s]))"#,
        "min = 90.0",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = run_in(&warm, "lhr", Path::new("."));
        if r.pass {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no samples in prometheus after 30 s (last probe: {}); its log:\n{}",
            r.detail,
            prom.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The error rate crosses max: the detail names the value, the threshold and the series.
    let g = prom_gate(&url, ERROR_RATE, "max = 0.05");
    let r = run_in(&g, "lhr", Path::new("."));
    assert_fails_with(&r, "value 0.09");
    assert_fails_with(&r, "> max 0.05 {region=\"lhr\"}");

    // Below max passes.
    let r = run_in(&g, "nrt", Path::new("."));
    assert!(r.pass, "{}", r.detail);
    assert!(r.detail.starts_with("value 0 <= max 0.05"), "{}", r.detail);
    let loose = prom_gate(&url, ERROR_RATE, "max = 0.5");
    assert!(run_in(&loose, "lhr", Path::new(".")).pass);

    // min: too little traffic fails.
    let traffic = prom_gate(
        &url,
        r#"sum(rate(http_requests_total{region="{region}"}[5s]))"#,
        "min = 50.0",
    );
    let r = run_in(&traffic, "lhr", Path::new("."));
    assert!(r.pass, "{}", r.detail);
    assert_fails_with(&run_in(&traffic, "ams", Path::new(".")), "< min 50");

    // 0/0 is NaN: no data, on_empty decides.
    let r = run_in(&g, "ams", Path::new("."));
    assert_fails_with(&r, "NaN (no data); on_empty = fail");
    let lenient = prom_gate(&url, ERROR_RATE, "max = 0.05\non_empty = \"pass\"");
    let r = run_in(&lenient, "ams", Path::new("."));
    assert!(r.pass, "{}", r.detail);

    // A region with no series at all: an empty result, on_empty decides.
    assert_fails_with(
        &run_in(&g, "xxx", Path::new(".")),
        "no data; on_empty = fail",
    );
    assert!(run_in(&lenient, "xxx", Path::new(".")).pass);

    // Many series: the one that breaks max is named.
    let all = prom_gate(
        &url,
        r#"sum by (region) (rate(http_requests_total{code=~"5.."}[5s])) / sum by (region) (rate(http_requests_total[5s]))"#,
        "max = 0.05",
    );
    let r = run_in(&all, "lhr", Path::new("."));
    assert_fails_with(&r, "{region=\"lhr\"}");
    assert!(!r.detail.contains("nrt"), "{}", r.detail);

    // A scalar answer.
    let scalar = prom_gate(&url, "1 + 1", "max = 1.0");
    assert_fails_with(&run_in(&scalar, "lhr", Path::new(".")), "value 2 > max 1");

    // A range selector (a matrix) is judged on each series' last sample.
    let matrix = prom_gate(
        &url,
        r#"http_requests_total{region="nrt",code="500"}[5s]"#,
        "max = 0.0",
    );
    let r = run_in(&matrix, "lhr", Path::new("."));
    assert!(r.pass, "{}", r.detail);

    // Malformed PromQL: Prometheus's own message is quoted.
    // (The loader refuses it now, so it is written into a parsed gate, as a query only the
    // server refuses would reach the probe.)
    let mut bad = prom_gate(&url, ERROR_RATE, "max = 0.05");
    if let shipgate::config::GateKind::Prometheus(p) = &mut bad.kind {
        p.query = "sum(rate(http_requests_total[5s]".into();
    }
    let r = run_in(&bad, "lhr", Path::new("."));
    assert_fails_with(&r, "prometheus error (bad_data, HTTP 400)");
    assert_fails_with(&r, "parse error");
    assert!(r.config_fault, "bad_data is the gate's fault: {r:?}");

    // Prometheus down.
    let port = closed_port();
    let down = prom_gate(
        &format!("http://127.0.0.1:{port}"),
        ERROR_RATE,
        "max = 0.05",
    );
    assert_fails_with(&run_in(&down, "lhr", Path::new(".")), "connection refused");

    // A deploy (over lhr at v1) whose canary trips on this error rate: `explain` tells the rollback's cause as
    // the value against its threshold and the failures in a row.
    let p = crate::common::pipeline::exec_project(&format!(
        "{}[[stage]]\nname = \"canary\"\nregions = [\"lhr\"]\ngates = [\"errors\"]\n\n\
         [gate.errors]\ntype = \"prometheus\"\nurl = \"{url}\"\nquery = '{ERROR_RATE}'\n\
         max = 0.05\ninterval = \"100ms\"\nfailures = 3\nseverity = \"P1\"\n",
        crate::common::pipeline::exec_header()
    ));
    // The error rate does not depend on the version: the rollback's verification trips too.
    p.run(&["deploy", "--version", "v2"])
        .expect(crate::common::code::ROLLBACK_FAILED);
    let story = p
        .run(&["explain"])
        .expect(crate::common::code::SUCCESS)
        .stdout;
    let cause = story
        .lines()
        .find(|l| l.contains("automatic rollback failed"))
        .unwrap_or_else(|| panic!("no rollback in the story:\n{story}"));
    assert!(
        cause.contains("— because `errors` [P1] tripped in lhr at "),
        "{cause}"
    );
    assert!(
        cause.contains(": value 0.09")
            && cause.contains(" > max 0.05 {region=\"lhr\"}, 3 consecutive failures"),
        "{cause}"
    );
    assert!(
        story.contains("gate errors [P1] in lhr on v2: fail (1/3)"),
        "{story}"
    );

    drop(prom);
}
