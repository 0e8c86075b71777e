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

    /// Redacts every string (and object key) inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                let r = self.redact(s);
                if r != *s {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let needs_key_change = map.keys().any(|k| self.redact(k) != *k);
                if needs_key_change {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.redact_json(&mut v);
                        map.insert(self.redact(&k), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.redact_json(v));
                }
            }
            _ => {}
        }
    }
}

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
    fn masks_json_keys_and_values() {
        let mut r = Redactor::default();
        r.add("s3cr3t");
        let mut v = serde_json::json!({"a": ["x s3cr3t"], "s3cr3t": 1});
        r.redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x ***"], "***": 1}));
    }
}
