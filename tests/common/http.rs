//! A real HTTP server on loopback whose answers the test controls, recording every request.

use std::sync::{Arc, Mutex};

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers, body, and an optional delay before answering.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: std::time::Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: std::time::Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// The server; stops when dropped.
pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
    server: Arc<tiny_http::Server>,
    handler: Arc<Mutex<Arc<Handler>>>,
}

impl Server {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Arc<Handler>>> = Arc::new(Mutex::new(Arc::new(handler)));
        for _ in 0..4 {
            let server = server.clone();
            let requests = requests.clone();
            let handler = handler.clone();
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = String::new();
                    let _ = std::io::Read::read_to_string(rq.as_reader(), &mut body);
                    let req = Request {
                        method: rq.method().to_string(),
                        path: rq.url().to_string(),
                        headers: rq
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    requests.lock().unwrap().push(req.clone());
                    let h = handler.lock().unwrap().clone();
                    let reply = h(&req);
                    if !reply.delay.is_zero() {
                        std::thread::sleep(reply.delay);
                    }
                    let mut resp =
                        tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                    for (k, v) in reply.headers {
                        resp.add_header(
                            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                        );
                    }
                    let _ = rq.respond(resp);
                }
            });
        }
        Server {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            server,
            handler,
        }
    }

    /// Always answers `status` with `body`.
    pub fn fixed(status: u16, body: &str) -> Self {
        let body = body.to_string();
        Self::start(move |_| Reply::new(status, &body))
    }

    /// Changes the answers from now on.
    pub fn set_handler(&self, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// A receiver that accepts connections and never answers (a hung webhook); stops when dropped.
pub struct Blackhole {
    pub url: String,
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                held.push(conn);
            }
        });
        Blackhole {
            url: format!("http://{addr}"),
            addr,
            stop,
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
