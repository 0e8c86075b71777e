//! GitHub Actions (SPEC §7): workflow commands, the step summary and step outputs.
//!
//! [`command`] is the one writer of workflow commands, escaping exactly as `@actions/core` does
//! (`toCommandValue` + `escapeData` / `escapeProperty`); everything else shipgate prints goes
//! through the neutraliser ([`crate::output::neutral`]), so no other line can be one.

use std::io::Write;

use crate::output::neutral;

/// Prints the workflow command `::name k=v,…::data`, on stderr (the runner reads workflow
/// commands from both streams, and stdout stays for data). Data and property values are
/// redacted, their control characters shown visibly (but CR and LF, which the escaping keeps),
/// and escaped as the runner unescapes them.
pub fn command(name: &str, properties: &[(&str, &str)], data: &str) {
    let data = crate::redact::redact(data);
    let data = visible(&data);
    let properties: Vec<(&str, String)> = properties
        .iter()
        .map(|(k, v)| (*k, visible(&crate::redact::redact(v))))
        .collect();
    write_command(name, &properties, &data);
}

/// The annotations of an error that ends a command: one per place in a file (a config error
/// points at each of its problems, in the Files changed view too), else one for the error.
pub fn error_annotations(err: &crate::error::Error) {
    if err.code == crate::exit_code::BLOCKED {
        // Policy said not now: a notice, not a failure of shipgate's.
        command(
            "notice",
            &[("title", "shipgate: blocked by policy")],
            &err.render(false),
        );
        return;
    }
    if err.locations.is_empty() {
        command("error", &[("title", "shipgate")], &err.to_string());
        return;
    }
    for at in err.locations.iter() {
        let file = workspace_relative(&at.file);
        let (line, col, end) = (
            at.line.to_string(),
            at.col.to_string(),
            at.end_col.to_string(),
        );
        let text = match &at.hint {
            Some(h) => format!("{}\nhint: {h}", at.message),
            None => at.message.clone(),
        };
        command(
            "error",
            &[
                ("file", &file),
                ("line", &line),
                ("col", &col),
                ("endColumn", &end),
                ("title", "shipgate: invalid pipeline"),
            ],
            &text,
        );
    }
}

/// `path` relative to `GITHUB_WORKSPACE` (what the runner resolves an annotation's `file`
/// against) when it lies in it, whatever `working-directory` the step ran in.
fn workspace_relative(path: &str) -> String {
    let workspace =
        std::env::var_os("GITHUB_WORKSPACE").and_then(|w| std::fs::canonicalize(w).ok());
    let full = std::fs::canonicalize(path).ok();
    match (workspace, full) {
        (Some(w), Some(f)) => f
            .strip_prefix(&w)
            .map(|rel| rel.display().to_string())
            .unwrap_or_else(|_| path.to_string()),
        _ => path.to_string(),
    }
}

/// Registers `secret` with the runner's masker. A multi-line secret is masked whole and line
/// by line too: the runner masks within a line, so the lines of a PEM key printed one by one
/// would otherwise show in clear.
pub fn add_mask(secret: &str) {
    write_command("add-mask", &[], secret);
    if secret.contains(['\n', '\r']) {
        for line in secret.split(['\n', '\r']).map(str::trim) {
            if !line.is_empty() {
                write_command("add-mask", &[], line);
            }
        }
    }
}

fn write_command(name: &str, properties: &[(&str, String)], data: &str) {
    let mut line = format!("::{name}");
    for (i, (k, v)) in properties.iter().enumerate() {
        line.push(if i == 0 { ' ' } else { ',' });
        line.push_str(&format!("{k}={}", escape_property(v)));
    }
    line.push_str("::");
    line.push_str(&escape_data(data));
    line.push('\n');
    crate::output::raw_stderr(&line);
}

/// Control characters visible (CR and LF excepted: [`escape_data`] escapes them) and no `##[`.
fn visible(s: &str) -> String {
    s.split('\n')
        .map(|line| {
            line.split('\r')
                .map(|part| neutral::inline(part).into_owned())
                .collect::<Vec<_>>()
                .join("\r")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `@actions/core` `escapeData`: `%`, CR, LF.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `@actions/core` `escapeProperty`: also `:` and `,`, which end a property.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One cell of a step-summary (Markdown) table: `|` would end the cell and a newline the row.
pub fn summary_cell(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|line| !line.is_empty())
        .map(|line| neutral::inline_for(line, false).replace('|', "\\|"))
        .collect::<Vec<_>>()
        .join("<br>")
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
