//! The plan: stages, regions, gates with their effective settings, and (for `--dry-run`) the
//! exact commands. Rendering only; nothing here changes anything.

use std::fmt::Write;

use serde_json::json;

use crate::config::{Config, GateKind};
use crate::output::Output;

fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One line describing what a gate checks.
pub fn gate_summary(kind: &GateKind) -> String {
    match kind {
        GateKind::Http(h) => {
            let status = if h.expect_status.is_empty() {
                "2xx".to_string()
            } else {
                h.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            };
            let mut s = format!("{} {} → {status}", h.method, h.url);
            if let Some(b) = &h.body_contains {
                write!(s, ", body contains {b:?}").ok();
            }
            if let Some(l) = h.max_latency {
                write!(s, ", within {}", human(l)).ok();
            }
            s
        }
        GateKind::Dns(d) => {
            if d.addresses.is_empty() {
                format!("resolve {}", d.host)
            } else {
                format!("resolve {} to {}", d.host, d.addresses.join(", "))
            }
        }
        GateKind::Tcp(t) => format!("connect {}", t.address),
        GateKind::Prometheus(p) => {
            let mut bounds = Vec::new();
            if let Some(min) = p.min {
                bounds.push(format!("≥ {min}"));
            }
            if let Some(max) = p.max {
                bounds.push(format!("≤ {max}"));
            }
            format!(
                "{} {} at {} (empty: {:?})",
                p.query,
                bounds.join(" and "),
                p.url,
                p.on_empty
            )
            .replace("(empty: Fail)", "(empty fails)")
            .replace("(empty: Pass)", "(empty passes)")
        }
        GateKind::Command(c) => format!("run {}", crate::redact::display_argv(&c.run)),
    }
}

/// The resolved config for people.
pub fn render_config(config: &Config, output: &Output) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "{} {} via {}",
        output.bold("app"),
        config.app.name,
        config.target.adapter.as_str()
    )
    .ok();
    if let Some(image) = &config.target.image {
        writeln!(s, "  image  {image}").ok();
    }
    writeln!(
        s,
        "  state  {} ({} store)",
        config.state.dir.display(),
        if config.state.store == crate::config::StoreKind::Git {
            "git"
        } else {
            "file"
        }
    )
    .ok();
    for (i, stage) in config.stages.iter().enumerate() {
        writeln!(
            s,
            "{} {}. {}  regions {}  timeout {}  bake {}  on_failure {}  max_parallel {}",
            output.bold("stage"),
            i + 1,
            stage.name,
            stage.regions.join(","),
            human(stage.timeout),
            human(stage.bake),
            stage.on_failure.as_str(),
            if stage.max_parallel == 0 {
                "all".to_string()
            } else {
                stage.max_parallel.to_string()
            },
        )
        .ok();
        if stage.gates.is_empty() {
            writeln!(
                s,
                "    (no gates: regions are healthy once deployed and baked)"
            )
            .ok();
        }
        for name in &stage.gates {
            if let Some(g) = config.gates.get(name) {
                writeln!(
                    s,
                    "    gate {name} [{} {}] {}; every {}, timeout {}, delay {}, trips after {} failure(s){}",
                    g.kind.type_name(),
                    g.severity.as_str(),
                    gate_summary(&g.kind),
                    human(g.interval),
                    human(g.timeout),
                    human(g.delay),
                    g.failures,
                    if g.uses_region() { "" } else { "; shared by the stage's regions" },
                )
                .ok();
            }
        }
    }
    s
}

/// The resolved config as data.
pub fn config_json(config: &Config) -> serde_json::Value {
    json!({
        "app": config.app.name,
        "adapter": config.target.adapter.as_str(),
        "image": config.target.image,
        "state_dir": config.state.dir,
        "stages": config.stages,
        "gates": config.gates,
        "notify": config.notify,
        "events": config.events,
    })
}
