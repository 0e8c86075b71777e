//! The command gate: a program (argv, never a shell) that exits 0 when healthy.

use std::time::Duration;

use crate::config::placeholder::Vars;
use crate::config::CommandGate;
use crate::exec::{self, CommandSpec};

use super::probe::{fmt_elapsed, ProbeCtx, ProbeResult};

/// Lines of output quoted in a failing detail.
const TAIL_LINES: usize = 3;

/// Probes a command gate once: `run` rendered with `vars`, in the config's directory, with the
/// `SHIPGATE_*` variables, bounded by `timeout` (the executor kills it after that).
pub fn probe(
    gate: &CommandGate,
    timeout: Duration,
    vars: &Vars,
    ctx: &ProbeCtx<'_>,
) -> ProbeResult {
    let argv = vars.render_argv(&gate.run);
    if argv.is_empty() || argv[0].is_empty() {
        return ProbeResult::fail("command gate has an empty `run`");
    }
    let spec = CommandSpec {
        argv,
        env: vars.env(),
        cwd: Some(ctx.cwd.clone()),
        timeout,
        bin_key: None,
        stdin: None,
    };
    let out = match exec::run(&spec, ctx.cancel, None) {
        Ok(out) => out,
        // Missing program, timeout, cancellation: the executor's message says which.
        Err(e) => return ProbeResult::fail(format!("`{}`: {e}", spec.display())),
    };
    let how = match (out.code, out.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".to_string(),
    };
    let head = format!("{how} in {}", fmt_elapsed(out.elapsed));
    if out.success() {
        return ProbeResult::pass(head);
    }
    // What the program said last explains the failure best: stderr first, else stdout.
    let tail = tail(&out.stderr_tail).or_else(|| tail(&out.stdout));
    match tail {
        Some(t) => ProbeResult::fail(format!("`{}` {head}: {t}", spec.display())),
        None => ProbeResult::fail(format!("`{}` {head}", spec.display())),
    }
}

/// The last few non-empty lines, joined with ` | `.
fn tail(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let from = lines.len().saturating_sub(TAIL_LINES);
    Some(lines[from..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\nd\n"), Some("b | c | d".into()));
        assert_eq!(tail("\n  \n"), None);
    }
}
