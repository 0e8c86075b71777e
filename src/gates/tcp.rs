//! The tcp gate: a TCP connection to `host:port` opens.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::config::placeholder::Vars;
use crate::config::TcpGate;

use super::dns::resolve;
use super::probe::{fmt_duration, fmt_elapsed, ProbeResult};

/// Probes a tcp gate once: resolve, then try each address until one connects, all within
/// `timeout`.
pub fn probe(gate: &TcpGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let address = vars.render(&gate.address);
    let start = Instant::now();
    let addrs = match resolve(&address, timeout) {
        Ok(a) => a,
        Err(why) => return ProbeResult::fail(format!("{address} did not resolve: {why}")),
    };
    let mut last_error = String::new();
    for addr in addrs {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            last_error = format!("no connection within timeout {}", fmt_duration(timeout));
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => {
                return ProbeResult::pass(format!(
                    "connected to {addr} in {}",
                    fmt_elapsed(start.elapsed())
                ))
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                        format!("no connection within timeout {}", fmt_duration(timeout))
                    }
                    _ => e.to_string(),
                };
                // Name the address tried when the host had to be resolved.
                last_error = if addr.to_string() == address {
                    why
                } else {
                    format!("{addr}: {why}")
                };
            }
        }
    }
    ProbeResult::fail(format!(
        "{address}: {last_error} (after {})",
        fmt_elapsed(start.elapsed())
    ))
}
