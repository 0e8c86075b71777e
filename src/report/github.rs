//! GitHub Actions (SPEC §7): workflow commands, the step summary and step outputs.

use std::io::Write;

/// Prints a workflow command, on stderr: the runner reads workflow commands from both streams,
/// and stdout stays for data (a `--format json` document must parse).
pub fn command(line: &str) {
    let line = crate::redact::redact(line);
    crate::say!("{line}");
}

/// Escapes a workflow-command property value (`title=`), which also forbids `:` and `,`.
pub fn escape_property(s: &str) -> String {
    crate::output::github_escape(s)
        .replace(':', "%3A")
        .replace(',', "%2C")
}

/// Appends to the file named by an environment variable (`GITHUB_STEP_SUMMARY`, `GITHUB_OUTPUT`).
pub fn append_env_file(var: &str, text: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(crate::redact::redact(text).as_bytes())
}

/// Writes `key=value` step outputs (values are single-line here; multi-line ones would need
/// the heredoc form).
pub fn write_outputs(pairs: &[(&str, String)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (k, v) in pairs {
        let v = v.replace(['\n', '\r'], " ");
        text.push_str(&format!("{k}={v}\n"));
    }
    append_env_file("GITHUB_OUTPUT", &text)
}
