//! `{placeholders}` in argv elements, URLs, headers and queries (SPEC §2).
//!
//! A placeholder is `{name}` where name is an identifier; anything else in braces (PromQL label
//! matchers such as `{code=~"5.."}`) is literal text. `{{` and `}}` write a literal brace.
//! Substitution happens inside one string: nothing is ever passed through a shell.

use std::collections::BTreeMap;

/// Every placeholder a template may use.
pub const NAMES: &[&str] = &[
    "app",
    "version",
    "previous_version",
    "region",
    "stage",
    "image",
    "deploy_id",
];

/// `{weight}`: the share (percent) of the region that `{version}` is to get, in the exec
/// adapter's deploy and rollback commands: the step's share in a stepped stage, else 100.
pub const WEIGHT: &str = "weight";

/// A piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str, usize),
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let bytes = template.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                out.push(Piece::Text(&template[text_start..i + 1]));
                i += 2;
                text_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                out.push(Piece::Text(&template[text_start..i + 1]));
                i += 2;
                text_start = i;
            }
            b'{' => {
                if let Some(end) = template[i + 1..].find('}') {
                    let name = &template[i + 1..i + 1 + end];
                    if is_ident(name) {
                        out.push(Piece::Text(&template[text_start..i]));
                        out.push(Piece::Var(name, i));
                        i += end + 2;
                        text_start = i;
                        continue;
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push(Piece::Text(&template[text_start..]));
    out
}

/// The placeholder names a template uses, with their byte offsets.
pub fn used(template: &str) -> Vec<(&str, usize)> {
    pieces(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(name, at) => Some((name, at)),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Whether `template` uses placeholder `name`.
pub fn mentions(template: &str, name: &str) -> bool {
    used(template).iter().any(|(n, _)| *n == name)
}

/// The values placeholders stand for in one context (a region of a stage of a deploy).
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: BTreeMap<&'static str, String>,
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a placeholder. Unknown names are a programming error.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        debug_assert!(
            NAMES.contains(&name) || name == WEIGHT,
            "unknown placeholder {name}"
        );
        self.values.insert(name, value.into());
        self
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Substitutes every placeholder; one that has no value in this context becomes empty.
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        for piece in pieces(template) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name, _) => out.push_str(self.get(name).unwrap_or("")),
            }
        }
        out
    }

    /// Renders each element of an argv template.
    pub fn render_argv(&self, argv: &[String]) -> Vec<String> {
        argv.iter().map(|a| self.render(a)).collect()
    }

    /// The `SHIPGATE_*` environment variables for commands (SPEC §2).
    pub fn env(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (format!("SHIPGATE_{}", k.to_ascii_uppercase()), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_braces_are_text() {
        let q = r#"sum(rate(x{code=~"5..",region="{region}"}[1m]))"#;
        assert_eq!(
            used(q).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec!["region"]
        );
        let vars = Vars::new().with("region", "lhr");
        assert_eq!(
            vars.render(q),
            r#"sum(rate(x{code=~"5..",region="lhr"}[1m]))"#
        );
    }

    #[test]
    fn double_braces_escape() {
        let vars = Vars::new().with("version", "v1");
        assert_eq!(vars.render("{{version}} {version}"), "{version} v1");
        assert!(used("{{version}}").is_empty());
    }

    #[test]
    fn env_names() {
        let vars = Vars::new()
            .with("previous_version", "a")
            .with("deploy_id", "d");
        assert_eq!(
            vars.env(),
            vec![
                ("SHIPGATE_DEPLOY_ID".to_string(), "d".to_string()),
                ("SHIPGATE_PREVIOUS_VERSION".to_string(), "a".to_string())
            ]
        );
    }

    #[test]
    fn render_keeps_one_argv_element() {
        let vars = Vars::new().with("region", "a b; rm -rf /");
        assert_eq!(
            vars.render_argv(&["--r={region}".into()]),
            vec!["--r=a b; rm -rf /"]
        );
    }
}
