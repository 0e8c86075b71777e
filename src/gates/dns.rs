//! The dns gate: the host resolves, to the expected addresses when some are given.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::placeholder::Vars;
use crate::config::DnsGate;

use super::probe::{fmt_duration, fmt_elapsed, ProbeResult};

/// Resolves `host_port` (anything `ToSocketAddrs` takes as a string) with the system
/// resolver, bounded by `timeout`.
///
/// `getaddrinfo` cannot be interrupted, so it runs on its own thread; on timeout that thread
/// is left to finish on its own and its answer is dropped.
pub(crate) fn resolve(host_port: &str, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let target = host_port.to_string();
    let spawned = std::thread::Builder::new()
        .name("shipgate-resolve".into())
        .spawn(move || {
            let answer = target
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        return Err(format!("could not start the resolver: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err("no addresses".into()),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within timeout {}",
            fmt_duration(timeout)
        )),
    }
}

/// Probes a dns gate once.
pub fn probe(gate: &DnsGate, timeout: Duration, vars: &Vars) -> ProbeResult {
    let host = vars.render(&gate.host);
    let start = Instant::now();
    // Port 0: only the addresses matter.
    let addrs = match resolve(&format!("{}:0", bracket_ipv6(&host)), timeout) {
        Ok(a) => a,
        Err(why) => {
            return ProbeResult::fail(format!(
                "{host} did not resolve after {}: {why}",
                fmt_elapsed(start.elapsed())
            ))
        }
    };
    let elapsed = start.elapsed();
    let mut answers: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    answers.sort();
    answers.dedup();
    let shown = answers
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let expected: Vec<String> = gate.addresses.iter().map(|a| vars.render(a)).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(|e| e.trim())
        .filter(|e| match e.parse::<IpAddr>() {
            Ok(ip) => !answers.contains(&ip),
            // Not an address at all: it can never be among the answers.
            Err(_) => true,
        })
        .collect();
    if missing.is_empty() {
        ProbeResult::pass(format!(
            "{host} resolved to {shown} in {}",
            fmt_elapsed(elapsed)
        ))
    } else {
        ProbeResult::fail(format!(
            "{host} resolved to {shown}, missing {}",
            missing.join(", ")
        ))
    }
}

/// `::1` must be written `[::1]` before a port.
fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
