//! A real smart-HTTP git remote on loopback: `git http-backend` behind a small CGI server that
//! serves only requests carrying exactly one expected `Authorization` header (anything else is
//! a 401 challenge, as GitHub answers). Every request's `Authorization` values are recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

pub const BACKEND: &str = "/usr/lib/git-core/git-http-backend";

/// The user git-http-backend is told authenticated (it allows pushes only to someone).
pub const USER: &str = "x-access-token";

/// `Basic base64(x-access-token:TOKEN)`, as `actions/checkout` and a token credential send it.
pub fn basic(token: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{token}"));
    format!("Basic {b64}")
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub url: String,
    /// Every `Authorization` header of the request, in order.
    pub authorization: Vec<String>,
    pub status: u16,
}

/// The server; stops when dropped. Repositories live under [`GitHttp::root`].
pub struct GitHttp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    root: tempfile::TempDir,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// What git-http-backend wrote on stderr, for failure messages.
    log: Arc<Mutex<String>>,
    server: Arc<tiny_http::Server>,
}

impl GitHttp {
    /// Serves the repositories under a fresh root to requests whose only `Authorization`
    /// header is `expected` (compared without regard to the scheme's case, as servers do).
    pub fn start(expected: &str) -> GitHttp {
        let root = tempfile::tempdir().unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        for _ in 0..4 {
            let (server, seen, log) = (server.clone(), seen.clone(), log.clone());
            let (root, expected) = (root.path().to_path_buf(), expected.to_string());
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    serve(rq, &root, &expected, &seen, &log);
                }
            });
        }
        GitHttp {
            url: format!("http://127.0.0.1:{port}"),
            root,
            seen,
            log,
            server,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates the bare repository `name` (say `app.git`) and returns its path.
    pub fn bare(&self, name: &str) -> PathBuf {
        let path = self.root().join(name);
        let out = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        path
    }

    /// The URL of repository `name`.
    pub fn repo_url(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// What git-http-backend said on stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn header<'a>(rq: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn same_credential(got: &str, expected: &str) -> bool {
    match (got.split_once(' '), expected.split_once(' ')) {
        (Some((s1, c1)), Some((s2, c2))) => s1.eq_ignore_ascii_case(s2) && c1.trim() == c2,
        _ => false,
    }
}

fn serve(
    mut rq: tiny_http::Request,
    root: &Path,
    expected: &str,
    seen: &Mutex<Vec<Seen>>,
    log: &Mutex<String>,
) {
    let authorization: Vec<String> = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.to_string())
        .collect();
    let mut record = Seen {
        method: rq.method().to_string(),
        url: rq.url().to_string(),
        authorization: authorization.clone(),
        status: 401,
    };
    let mut body = Vec::new();
    let _ = rq.as_reader().read_to_end(&mut body);
    if !(authorization.len() == 1 && same_credential(&authorization[0], expected)) {
        seen.lock().unwrap().push(record);
        let challenge =
            tiny_http::Header::from_bytes(&b"WWW-Authenticate"[..], &b"Basic realm=\"x\""[..])
                .unwrap();
        let _ = rq.respond(
            tiny_http::Response::from_string("unauthorized\n")
                .with_status_code(401)
                .with_header(challenge),
        );
        return;
    }

    // RFC 3875: the script's environment.
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut cmd = Command::new(BACKEND);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "100M")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", rq.method().as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        // tiny_http has undone any chunked transfer encoding: this is the body as sent.
        .env("CONTENT_LENGTH", body.len().to_string());
    for (name, var) in [
        ("Content-Type", "CONTENT_TYPE"),
        // A gzipped request body is inflated by the backend (git sends large ones so; libgit2
        // compresses none). `Expect: 100-continue`, which libgit2 may send, tiny_http answers.
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(v) = header(&rq, name) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git-http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut status = 200;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            status = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
        } else if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            headers.push(h);
        }
    }
    record.status = status;
    seen.lock().unwrap().push(record);
    // The body streams from the backend's stdout as it writes it (chunked).
    let response =
        tiny_http::Response::new(tiny_http::StatusCode(status), headers, stdout, None, None);
    let _ = rq.respond(response);
    let _ = feeder.join();
    let _ = child.wait();
    let text = drain.join().unwrap_or_default();
    if !text.is_empty() {
        log.lock().unwrap().push_str(&text);
    }
}
