//! Secrets never print (SPEC §3): every value of a `*_env` variable the config names and of the
//! platform tokens is replaced by `***` in all output, history, audit and event payloads.
//!
//! One process-wide redactor is installed at start-up, so every writer (logs, errors, ledger,
//! notifications) applies the same set without threading it through every call.

use std::sync::{OnceLock, RwLock};

/// Variables that are always secret, whatever the config says.
pub const ALWAYS_SECRET: &[&str] = &[
    "FLY_API_TOKEN",
    "FLY_ACCESS_TOKEN",
    "GITHUB_TOKEN",
    "SHIPGATE_GIT_TOKEN",
];

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not treated as secrets: masking every "1" or "on" in the output
/// would destroy it and protect nothing.
const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Collects the current values of the named environment variables.
    pub fn from_env<S: AsRef<str>>(names: &[S]) -> Self {
        let mut r = Redactor::default();
        for name in names {
            if let Ok(v) = std::env::var(name.as_ref()) {
                r.add(v);
            }
        }
        r
    }

    pub fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        let secret = secret.trim().to_string();
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.contains(&secret) {
            self.secrets.push(secret);
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts a JSON value field by field: values only, never structure. Object keys are
    /// never changed, nor the values of [`STRUCTURAL`] fields (ids, hashes, timestamps, enums,
    /// names and versions the ledger folds): a secret that happens to equal `prev`, `success`
    /// or a region name must not rewrite a record into one that no longer parses or chains.
    /// Every other string (messages, reasons, errors, details, argv, stderr tails, metadata
    /// values) is redacted wherever it sits.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if !self.secrets.is_empty() {
            self.redact_value(value);
        }
    }

    fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s)
                if self
                    .secrets
                    .iter()
                    .any(|secret| s.contains(secret.as_str())) =>
            {
                *s = self.redact(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    // An object under a structural name is a record of its own (or a map keyed
                    // by region: a region may be called `prev`), so its fields are judged anew.
                    if v.is_object() || !STRUCTURAL.contains(&k.as_str()) {
                        self.redact_value(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Fields whose values are the records' structure, never free text: the envelope, ids, hashes,
/// timestamps, enum values, and the names and versions `status.json` is folded from (strings
/// and lists of them; an object under such a name has its own fields judged). A secret is never one of these; masking one that equals such a
/// value would only break the ledger.
pub const STRUCTURAL: &[&str] = &[
    // The ledger envelope.
    "schema",
    "id",
    "ts",
    "prev",
    // Enums and ids.
    "kind",
    "status",
    "priority",
    "severity",
    "result",
    "position",
    "trigger",
    "outcome",
    "deploy_id",
    "event_id",
    "last_record",
    // Times.
    "start_time",
    "end_time",
    "updated_at",
    "deployed_at",
    "started_at",
    "time",
    // Names and versions the state is folded from.
    "app",
    "stage",
    "stages",
    "region",
    "regions",
    "gate",
    "version",
    "versions",
    "previous_version",
    "previous_versions",
    "from_version",
    "to_version",
    "target",
    "may_run",
    "mixed_regions",
    "failed_regions",
    // CloudEvents attributes.
    "specversion",
    "type",
    "source",
    "subject",
    "datacontenttype",
];

fn global_cell() -> &'static RwLock<Redactor> {
    static GLOBAL: OnceLock<RwLock<Redactor>> = OnceLock::new();
    GLOBAL.get_or_init(|| RwLock::new(Redactor::from_env(ALWAYS_SECRET)))
}

/// Adds the values of these environment variables to the process-wide set.
pub fn install_env<S: AsRef<str>>(names: &[S]) {
    let extra = Redactor::from_env(names);
    let mut g = global_cell().write().unwrap_or_else(|e| e.into_inner());
    for s in extra.secrets {
        g.add(s);
    }
}

/// Adds one secret value (a webhook URL read at run time, say) to the process-wide set.
pub fn add_secret(value: &str) {
    global_cell()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .add(value);
}

/// A copy of the process-wide redactor.
pub fn global() -> Redactor {
    global_cell()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Redacts with the process-wide set.
pub fn redact(text: &str) -> String {
    global_cell()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .redact(text)
}

/// Redacts a JSON value with the process-wide set.
pub fn redact_json(value: &mut serde_json::Value) {
    global_cell()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .redact_json(value)
}

/// Redacts each element of an argv and joins it for display, quoting elements with spaces.
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let a = redact(a);
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "'\"\\$`;&|<>()*?!#".contains(c))
            {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_ignores_short_values() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("token");
        r.add("token-extended");
        assert_eq!(r.redact("x token-extended y token abc"), "x *** y *** abc");
    }

    #[test]
    fn masks_free_text_values_and_never_keys_or_structural_fields() {
        let mut r = Redactor::default();
        r.add("s3cr3t");
        r.add("success");
        r.add("prev");
        let mut v = serde_json::json!({
            "a": ["x s3cr3t"], "s3cr3t": 1, "prev": "abc", "status": "success",
            "message": "deploy success", "regions_detail": {"prev": {"error": "s3cr3t", "status": "success"}},
        });
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "a": ["x ***"], "s3cr3t": 1, "prev": "abc", "status": "success",
                "message": "deploy ***", "regions_detail": {"prev": {"error": "***", "status": "success"}},
            })
        );
    }
}
