//! HTTP delivery with retries, shared by notifications and events (SPEC §3).
//!
//! The policy: each attempt is bounded by a timeout (10 s); a failed attempt is retried up to
//! 3 times with exponential backoff and jitter. What is retried: transport errors (refused,
//! reset, timed out), 5xx and 429. Every other 4xx is final — the request itself is wrong
//! (a revoked Slack hook, a Discord 404 "unknown webhook"), and repeating it only delays the
//! deploy. On 429 the server's `Retry-After` header (seconds or an HTTP date), or Discord's JSON
//! `retry_after` (seconds, possibly fractional), replaces the backoff; a 429 asking for more
//! than [`RetryPolicy::max_wait`] (30 s) is not waited for — the delivery fails at once. A
//! 503's `Retry-After` is honoured up to the same cap. So one sink never holds a deploy up for
//! more than about `4 × timeout + 3 × max_wait` (2 min 10 s with the defaults).

use std::time::Duration;

/// Environment variable overriding the backoff base, in milliseconds. For tests: production
/// keeps the default.
pub const RETRY_BASE_ENV: &str = "SHIPGATE_RETRY_BASE_MS";
/// Environment variable overriding the per-attempt timeout, in milliseconds. For tests.
pub const HTTP_TIMEOUT_ENV: &str = "SHIPGATE_HTTP_TIMEOUT_MS";

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// One attempt's time limit: connect, send, and read the answer.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The first backoff; doubled for each further retry, plus up to 50 % jitter.
    pub base: Duration,
    /// The longest wait between attempts, from backoff or from `Retry-After`.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(10),
            retries: 3,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The default policy, with the test knobs [`RETRY_BASE_ENV`] and [`HTTP_TIMEOUT_ENV`]
    /// applied when `lookup` has them.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let ms = |name: &str| {
            lookup(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let mut policy = RetryPolicy::default();
        if let Some(base) = ms(RETRY_BASE_ENV) {
            policy.base = base;
        }
        if let Some(timeout) = ms(HTTP_TIMEOUT_ENV) {
            policy.timeout = timeout.max(Duration::from_millis(1));
        }
        policy
    }

    /// How long a delivery to a sink that accepts connections and never answers takes before
    /// it gives up: every attempt times out, with the longest backoff (full jitter) between
    /// them — 45 s with the defaults. A server that answers 429 or 503 with `Retry-After` can
    /// stretch this, up to `max_wait` per retry.
    pub fn give_up_after(&self) -> Duration {
        let waits: Duration = (1..=self.retries)
            .map(|retry| {
                let exp = self
                    .base
                    .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
                (exp + exp / 2).min(self.max_wait)
            })
            .sum();
        self.timeout.saturating_mul(self.retries + 1) + waits
    }

    /// The backoff before retry number `retry` (1-based): `base × 2^(retry-1)`, plus up to
    /// 50 % random jitter so many senders do not retry in step; at most `max_wait`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let jitter = exp.mul_f64(fastrand::f64() * 0.5);
        (exp + jitter).min(self.max_wait)
    }
}

/// One request to make: a POST (a body) or a GET (an empty body).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// What came of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: bool,
    /// Requests made (1 to `retries + 1`).
    pub attempts: u32,
    /// The last HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Why it failed, redacted; `None` when delivered.
    pub error: Option<String>,
    /// The answer's body when delivered (at most 64 KiB), for an API whose answer matters.
    pub body: String,
}

/// The answer to one attempt, reduced to what the retry decision needs.
#[derive(Debug)]
enum Attempt {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    Transport(String),
}

/// What to do after an attempt.
#[derive(Debug, PartialEq)]
enum Next {
    Done,
    /// Retry after this wait.
    Retry(Duration),
    /// Stop: not worth retrying.
    GiveUp,
}

/// Posts `post`, retrying as the policy says. Blocks for at most the policy's bound. Never
/// panics and never returns an error: the caller records the outcome.
pub fn deliver(post: &HttpRequest, policy: &RetryPolicy) -> Outcome {
    deliver_with(
        post,
        policy,
        |post| attempt(post, policy),
        std::thread::sleep,
    )
}

fn deliver_with(
    post: &HttpRequest,
    policy: &RetryPolicy,
    mut send: impl FnMut(&HttpRequest) -> Attempt,
    mut sleep: impl FnMut(Duration),
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = send(post);
        let (status, error) = match &answer {
            Attempt::Answered { status, body, .. } if (200..300).contains(status) => {
                return Outcome {
                    delivered: true,
                    attempts,
                    status: Some(*status),
                    error: None,
                    body: body.clone(),
                };
            }
            Attempt::Answered { status, body, .. } => {
                (Some(*status), describe_status(*status, body))
            }
            Attempt::Transport(e) => (None, e.clone()),
        };
        let next = decide(&answer, attempts, policy);
        let error = match (&next, &answer) {
            (
                Next::GiveUp,
                Attempt::Answered {
                    status: 429,
                    retry_after: Some(wait),
                    ..
                },
            ) if *wait > policy.max_wait => {
                format!(
                    "{error}; the server asks to wait {}s, longer than the {}s shipgate waits",
                    wait.as_secs_f64().ceil(),
                    policy.max_wait.as_secs()
                )
            }
            _ => error,
        };
        match next {
            Next::Retry(wait) => sleep(wait),
            Next::Done | Next::GiveUp => {
                let error = if attempts > 1 {
                    format!("{error} (after {attempts} attempts)")
                } else {
                    error
                };
                return Outcome {
                    delivered: false,
                    attempts,
                    status,
                    error: Some(crate::redact::redact(&error)),
                    body: String::new(),
                };
            }
        }
    }
}

/// The retry rule of the module documentation.
fn decide(answer: &Attempt, attempts: u32, policy: &RetryPolicy) -> Next {
    let retryable_wait = match answer {
        Attempt::Answered { status, .. } if (200..300).contains(status) => return Next::Done,
        Attempt::Answered {
            status: 429,
            retry_after,
            ..
        } => match retry_after {
            Some(wait) if *wait > policy.max_wait => return Next::GiveUp,
            Some(wait) => Some(*wait),
            None => None,
        },
        // A 503 may carry Retry-After too; too long a wait falls back to the backoff.
        Attempt::Answered {
            status,
            retry_after,
            ..
        } if *status >= 500 => retry_after.filter(|wait| *wait <= policy.max_wait),
        // GitHub's rate limits answer 403 with `x-ratelimit-remaining: 0` (read into
        // `retry_after` from `x-ratelimit-reset`): a wait, not a refusal.
        Attempt::Answered {
            status: 403,
            retry_after: Some(wait),
            ..
        } if *wait <= policy.max_wait => Some(*wait),
        Attempt::Answered { .. } => return Next::GiveUp,
        Attempt::Transport(_) => None,
    };
    if attempts > policy.retries {
        return Next::GiveUp;
    }
    Next::Retry(retryable_wait.unwrap_or_else(|| policy.backoff(attempts)))
}

fn describe_status(status: u16, body: &str) -> String {
    let body = body.trim();
    let snippet: String = body.chars().take(200).collect();
    let reason = match status {
        404 => " (unknown webhook: check the URL)",
        401 | 403 => " (rejected: check the URL or token)",
        429 => " (rate limited)",
        _ => "",
    };
    if snippet.is_empty() {
        format!("HTTP {status}{reason}")
    } else {
        format!("HTTP {status}{reason}: {snippet}")
    }
}

/// One request with ureq: status errors off so status and headers can be read, no redirects
/// (a webhook that redirects is misconfigured, and a POST must not silently become a GET).
fn attempt(post: &HttpRequest, policy: &RetryPolicy) -> Attempt {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(policy.timeout))
        .max_redirects(0)
        .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let answer = match post.method {
        Method::Post => {
            let mut request = agent.post(&post.url);
            for (k, v) in &post.headers {
                request = request.header(k.as_str(), v.as_str());
            }
            request.send(&post.body[..])
        }
        Method::Get => {
            let mut request = agent.get(&post.url);
            for (k, v) in &post.headers {
                request = request.header(k.as_str(), v.as_str());
            }
            request.call()
        }
    };
    match answer {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let header_wait = header("retry-after")
                .as_deref()
                .and_then(parse_retry_after)
                .or_else(|| {
                    if matches!(status, 403 | 429)
                        && header("x-ratelimit-remaining").as_deref() == Some("0")
                    {
                        header("x-ratelimit-reset")
                            .as_deref()
                            .and_then(parse_ratelimit_reset)
                    } else {
                        None
                    }
                });
            let body = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            let retry_after = header_wait.or_else(|| {
                if status == 429 {
                    json_retry_after(&body)
                } else {
                    None
                }
            });
            Attempt::Answered {
                status,
                retry_after,
                body,
            }
        }
        Err(ureq::Error::Timeout(_)) => Attempt::Transport(format!(
            "no answer within {}",
            humantime::format_duration(policy.timeout)
        )),
        Err(e) => Attempt::Transport(e.to_string()),
    }
}

/// `Retry-After`: delay-seconds (fractions accepted, as some servers send them) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// GitHub's `x-ratelimit-reset`: when the window resets, in UTC epoch seconds.
pub fn parse_ratelimit_reset(value: &str) -> Option<Duration> {
    let reset = value.trim().parse::<i64>().ok()?;
    let wait = reset - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.max(0) as u64))
}

/// Discord's rate-limit body: `{"retry_after": 1.234, "global": false, …}` in seconds.
fn json_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v.get("retry_after")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            ..RetryPolicy::default()
        }
    }

    fn post() -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            url: "http://127.0.0.1:9/".into(),
            headers: vec![],
            body: vec![],
        }
    }

    fn answered(status: u16, retry_after: Option<u64>) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        }
    }

    /// Runs the loop against scripted answers, returning the outcome and the waits.
    fn run(script: Vec<Attempt>) -> (Outcome, Vec<Duration>) {
        let script = RefCell::new(script.into_iter());
        let waits = RefCell::new(Vec::new());
        let outcome = deliver_with(
            &post(),
            &policy(),
            |_| {
                script
                    .borrow_mut()
                    .next()
                    .expect("more attempts than scripted")
            },
            |d| waits.borrow_mut().push(d),
        );
        (outcome, waits.into_inner())
    }

    #[test]
    fn retries_5xx_three_times_then_fails() {
        let (outcome, waits) = run((0..4).map(|_| answered(500, None)).collect());
        assert!(!outcome.delivered);
        assert_eq!(outcome.attempts, 4);
        assert_eq!(waits.len(), 3);
        // Exponential: 100, 200, 400 ms, each plus at most 50 % jitter.
        for (wait, base) in waits.iter().zip([100, 200, 400]) {
            assert!(*wait >= Duration::from_millis(base), "{wait:?}");
            assert!(*wait <= Duration::from_millis(base * 3 / 2), "{wait:?}");
        }
        assert!(outcome.error.unwrap().contains("after 4 attempts"));
    }

    #[test]
    fn honours_retry_after_on_429() {
        let (outcome, waits) = run(vec![answered(429, Some(2)), answered(200, None)]);
        assert!(outcome.delivered);
        assert_eq!(outcome.attempts, 2);
        assert_eq!(waits, vec![Duration::from_secs(2)]);
    }

    #[test]
    fn gives_up_when_retry_after_exceeds_the_cap() {
        let (outcome, waits) = run(vec![answered(429, Some(120))]);
        assert!(!outcome.delivered);
        assert_eq!(outcome.attempts, 1);
        assert!(waits.is_empty());
        assert!(outcome.error.unwrap().contains("asks to wait 120s"));
    }

    #[test]
    fn honours_a_503_retry_after_within_the_cap() {
        let (outcome, waits) = run(vec![
            answered(503, Some(3)),
            answered(503, Some(300)),
            answered(200, None),
        ]);
        assert!(outcome.delivered);
        assert_eq!(waits[0], Duration::from_secs(3));
        assert!(waits[1] < Duration::from_secs(1), "{:?}", waits[1]);
    }

    #[test]
    fn does_not_retry_other_4xx() {
        for status in [400, 403, 404] {
            let (outcome, waits) = run(vec![answered(status, None)]);
            assert!(!outcome.delivered);
            assert_eq!(outcome.attempts, 1);
            assert!(waits.is_empty());
        }
    }

    #[test]
    fn retries_transport_errors() {
        let (outcome, _) = run(vec![
            Attempt::Transport("connection refused".into()),
            answered(204, None),
        ]);
        assert!(outcome.delivered);
        assert_eq!(outcome.attempts, 2);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            json_retry_after(
                r#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#
            ),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_dead_sink_gives_up_after_every_attempt_timed_out() {
        // 4 × 10 s, plus at most 0.75 + 1.5 + 3 s of backoff.
        assert_eq!(
            RetryPolicy::default().give_up_after(),
            Duration::from_millis(45_250)
        );
        let fast = RetryPolicy {
            timeout: Duration::from_millis(100),
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        assert!(fast.give_up_after() < Duration::from_millis(420));
    }

    #[test]
    fn test_knobs_come_from_the_lookup() {
        let p = RetryPolicy::from_lookup(&|k| match k {
            RETRY_BASE_ENV => Some("5".into()),
            HTTP_TIMEOUT_ENV => Some("250".into()),
            _ => None,
        });
        assert_eq!(p.base, Duration::from_millis(5));
        assert_eq!(p.timeout, Duration::from_millis(250));
        assert_eq!(RetryPolicy::from_lookup(&|_| None), RetryPolicy::default());
    }
}
