//! Loading and checking `pipeline.toml`: every error names file, line and column, quotes the
//! line, and hints the fix where one fits. Exit 2; nothing is changed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::model::*;
use super::placeholder;
use super::raw::*;
use crate::error::Error;

mod judge;

/// One problem in the file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
    pub hint: Option<String>,
}

/// Renders diagnostics against the source, as `file:line:col: message`, the quoted line with a
/// caret underline, and the hint.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize, &str) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.text[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(self.text.len());
        let col = self.text[line_start..offset].chars().count() + 1;
        (
            line_no,
            col,
            self.text[line_start..line_end].trim_end_matches('\r'),
        )
    }

    fn location(&self, d: &Diagnostic) -> String {
        let (line, col, _) = self.line_col(d.span.start);
        format!("{}:{line}:{col}", self.path.display())
    }

    fn quote(&self, d: &Diagnostic) -> String {
        let (line, col, text) = self.line_col(d.span.start);
        let width = line.to_string().len();
        let len = d.span.end.saturating_sub(d.span.start).max(1);
        let avail = text.chars().count().saturating_sub(col - 1).max(1);
        let carets = "^".repeat(len.min(avail));
        format!(
            "{pad} |\n{line} | {text}\n{pad} | {spaces}{carets}",
            pad = " ".repeat(width),
            spaces = " ".repeat(col - 1)
        )
    }

    fn at(&self, d: &Diagnostic) -> crate::error::Location {
        let (line, col, text) = self.line_col(d.span.start);
        let len = d.span.end.saturating_sub(d.span.start).max(1);
        let avail = text.chars().count().saturating_sub(col - 1).max(1);
        crate::error::Location {
            file: self.path.display().to_string(),
            line,
            col,
            end_col: col + len.min(avail),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }

    fn to_error(&self, mut diags: Vec<Diagnostic>) -> Error {
        diags.sort_by_key(|d| d.span.start);
        let locations: Vec<crate::error::Location> = diags.iter().map(|d| self.at(d)).collect();
        let first = diags.remove(0);
        let mut detail = self.quote(&first);
        if !diags.is_empty() {
            if let Some(h) = &first.hint {
                detail.push_str(&format!("\nhint: {h}"));
            }
        }
        for d in &diags {
            detail.push_str(&format!(
                "\n\n{}: {}\n{}",
                self.location(d),
                d.message,
                self.quote(d)
            ));
            if let Some(h) = &d.hint {
                detail.push_str(&format!("\nhint: {h}"));
            }
        }
        if !diags.is_empty() {
            detail.push_str(&format!("\n\n{} error(s) in all", diags.len() + 1));
        }
        let mut err = Error::usage(format!("{}: {}", self.location(&first), first.message))
            .with_detail(detail);
        if diags.is_empty() {
            err.hint = first.hint;
        }
        err.locations = Box::new(locations);
        err
    }
}

/// Suggests the closest candidate to `word`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Close by Jaro-Winkler (shared prefix), or one or two edits away (a transposition such as
    // `lrh` for `lhr` counts as one).
    let max_edits = (word.chars().count() / 3).clamp(1, 2);
    candidates
        .into_iter()
        .map(|c| {
            let jw = strsim::jaro_winkler(word, c);
            let edits = strsim::osa_distance(word, c);
            let score = if edits <= max_edits { jw.max(0.85) } else { jw };
            (score, c)
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn hint_for(word: &str, candidates: &[&str]) -> Option<String> {
    did_you_mean(word, candidates.iter().copied()).map(|c| format!("did you mean `{c}`?"))
}

/// Reads and checks the file at `path`. `state_dir_override` is `--state-dir`.
pub fn load(path: &Path, state_dir_override: Option<&Path>) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let err = Error::usage(format!("cannot read pipeline file `{}`", path.display())).caused_by(&e);
        if e.kind() == std::io::ErrorKind::NotFound {
            err.with_hint("run from the directory holding pipeline.toml, or pass -c PATH / set SHIPGATE_CONFIG")
        } else {
            err
        }
    })?;
    parse(path, &text, state_dir_override)
}

/// Checks `text` as the contents of `path`.
pub fn parse(path: &Path, text: &str, state_dir_override: Option<&Path>) -> Result<Config, Error> {
    let source = Source { path, text };
    let (raw, mut diags) = deserialize(text);
    let Some(raw) = raw else {
        return Err(source.to_error(diags));
    };
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut checker = Checker { diags: Vec::new() };
    let config = checker.build(raw, path, &base_dir, state_dir_override);
    diags.append(&mut checker.diags);
    if diags.is_empty() {
        Ok(config.expect("a config without diagnostics"))
    } else {
        Err(source.to_error(diags))
    }
}

/// How many unknown keys are collected before the rest are left for the next run.
const MAX_UNKNOWN_KEYS: usize = 20;

/// Deserializes `text`, reporting every unknown key rather than only the first: serde stops at
/// the first one, so each is blanked out (replaced by spaces, which keeps every other span) and
/// the text read again. Returns the raw config when the rest deserializes, and the diagnostics.
fn deserialize(text: &str) -> (Option<RawConfig>, Vec<Diagnostic>) {
    let mut work = text.to_string();
    let mut diags = Vec::new();
    loop {
        let e = match toml::from_str::<RawConfig>(&work) {
            Ok(raw) => return (Some(raw), diags),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        let (message, hint) = explain_toml_error(e.message());
        let unknown = message.starts_with("unknown key");
        diags.push(Diagnostic {
            span: span.clone(),
            message,
            hint,
        });
        if !unknown || diags.len() >= MAX_UNKNOWN_KEYS || !blank_key(&mut work, &span) {
            return (None, diags);
        }
    }
}

/// Blanks the key at `key_span` and its value (a whole `[table]` or every `[[table]]` with
/// their keys) out of `text`. `false`, changing nothing, when the key cannot be found or the
/// result would not parse.
fn blank_key(text: &mut String, key_span: &Range<usize>) -> bool {
    use toml::de::{DeTable, DeValue};

    /// The ranges that hold `(key, value)`, header tables included.
    fn ranges(
        key: &Range<usize>,
        value: &Spanned<DeValue>,
        text: &str,
        out: &mut Vec<Range<usize>>,
    ) {
        let span = value.span();
        match value.get_ref() {
            // A `[header]` table: the header, then each of its keys.
            DeValue::Table(t) if text[span.clone()].starts_with('[') => {
                out.push(span);
                for (k, v) in t.iter() {
                    ranges(&k.span(), v, text, out);
                }
            }
            // `[[header]]` tables: each header and its keys.
            DeValue::Array(a) if a.iter().all(|v| text[v.span()].starts_with("[[")) => {
                for v in a.iter() {
                    ranges(&key.clone(), v, text, out);
                }
            }
            // `key = value` (a dotted `key.more = value` ends at its furthest value).
            _ => {
                let mut end = span.end.max(key.end);
                let mut stack = vec![value];
                while let Some(v) = stack.pop() {
                    end = end.max(v.span().end);
                    match v.get_ref() {
                        DeValue::Table(t) => stack.extend(t.values()),
                        DeValue::Array(a) => stack.extend(a.iter()),
                        _ => {}
                    }
                }
                out.push(key.start..end);
            }
        }
    }

    fn find<'a>(
        t: &'a DeTable<'a>,
        key_span: &Range<usize>,
    ) -> Option<(Range<usize>, &'a Spanned<DeValue<'a>>)> {
        for (k, v) in t.iter() {
            if k.span() == *key_span {
                return Some((k.span(), v));
            }
            let found = match v.get_ref() {
                DeValue::Table(t) => find(t, key_span),
                DeValue::Array(a) => a.iter().find_map(|x| match x.get_ref() {
                    DeValue::Table(t) => find(t, key_span),
                    _ => None,
                }),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    let mut blank = Vec::new();
    {
        let Ok(doc) = DeTable::parse(text) else {
            return false;
        };
        let Some((key, value)) = find(doc.get_ref(), key_span) else {
            return false;
        };
        // The last part of a dotted key (`app.typo = 1`): the statement starts at the line's
        // first key. (Header tables are blanked from their `[`, whatever the key's place.)
        let mut key = key;
        if text[..key.start]
            .trim_end_matches([' ', '\t'])
            .ends_with('.')
        {
            let line = text[..key.start].rfind('\n').map_or(0, |i| i + 1);
            let head = &text[line..key.start];
            if !head.trim_start().starts_with('[') {
                if head.contains(['{', ',', '=']) {
                    return false;
                }
                key.start = line + (head.len() - head.trim_start().len());
            }
        }
        ranges(&key, value, text, &mut blank);
    }
    let mut bytes = text.clone().into_bytes();
    for r in blank {
        for b in &mut bytes[r] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    }
    // Whole tokens were replaced byte by byte, so this is valid UTF-8 with every offset kept;
    // if it did not parse any more, nothing is blanked.
    let Ok(blanked) = String::from_utf8(bytes) else {
        return false;
    };
    if DeTable::parse(&blanked).is_err() {
        return false;
    }
    *text = blanked;
    true
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a short message and a
/// did-you-mean hint.
fn explain_toml_error(message: &str) -> (String, Option<String>) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let field = &rest[..end];
            let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
            let hint = match did_you_mean(field, expected.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None if !expected.is_empty() => format!("valid keys here: {}", expected.join(", ")),
                None => "remove it".to_string(),
            };
            return (format!("unknown key `{field}`"), Some(hint));
        }
    }
    (message.to_string(), None)
}

struct Checker {
    diags: Vec<Diagnostic>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gates watch each step of a stepped stage when `step_pause` is not given.
pub const DEFAULT_STEP_PAUSE: Duration = Duration::from_secs(60);
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// The longest any duration in the file may be. Nothing shipgate waits for should take longer
/// than a day (a GitHub Actions job is stopped after 6h); a longer value is a typo, and a huge
/// one would overflow deadlines or keep a rollback's verification waiting for ever.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
const MAX_DURATION_TEXT: &str = "24h";

impl Checker {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        self.diags.push(Diagnostic {
            span,
            message: message.into(),
            hint,
        });
    }

    /// A duration that may be zero (`bake`, `delay`), at most [`MAX_DURATION`].
    fn duration(&mut self, value: &Option<S>, key: &str, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        let d = match humantime::parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    v.span(),
                    format!("invalid duration `{}`: {e}", v.get_ref()),
                    Some("use forms like 300s, 5m, 1h30m".into()),
                );
                return default;
            }
        };
        if d > MAX_DURATION {
            self.error(
                v.span(),
                format!(
                    "`{key}` = `{}` is longer than the maximum of {MAX_DURATION_TEXT}",
                    v.get_ref(),
                ),
                Some(format!(
                    "every duration is at most {MAX_DURATION_TEXT} (a GitHub Actions job is stopped after 6h); use e.g. 30m or 2h"
                )),
            );
            return default;
        }
        d
    }

    /// A duration that bounds a wait (`timeout`, `interval`, …): a zero one could only fail.
    fn timeout(&mut self, value: &Option<S>, key: &str, default: Duration) -> Duration {
        let d = self.duration(value, key, default);
        if let (true, Some(v)) = (d.is_zero(), value) {
            self.error(
                v.span(),
                format!("`{key}` must be greater than zero"),
                Some(format!(
                    "a zero `{key}` fails at once; give it a length such as 30s or 5m, or remove it for the default"
                )),
            );
            return default;
        }
        d
    }

    fn opt_timeout(&mut self, value: &Option<S>, key: &str) -> Option<Duration> {
        value
            .as_ref()
            .map(|_| self.timeout(value, key, Duration::ZERO))
    }

    fn choice<T: Copy>(
        &mut self,
        value: &Option<S>,
        what: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == v.get_ref()) {
            return *t;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = hint_for(v.get_ref(), &names)
            .unwrap_or_else(|| format!("use one of: {}", names.join(", ")));
        self.error(
            v.span(),
            format!("invalid {what} `{}`", v.get_ref()),
            Some(hint),
        );
        default
    }

    /// Checks the placeholders of a templated string.
    fn template(&mut self, value: &S, allowed: &[&str]) -> String {
        let text = value.get_ref();
        for (name, at) in placeholder::used(text) {
            if !allowed.contains(&name) {
                // +1 for the opening quote of a basic string; close enough for literal strings too
                let start = value.span().start + 1 + at;
                let hint = if placeholder::NAMES.contains(&name) {
                    Some(format!(
                        "`{{{name}}}` has no value here; available: {}",
                        braces(allowed)
                    ))
                } else {
                    Some(
                        hint_for(name, allowed)
                            .map(|h| {
                                h.replace('`', "")
                                    .replace("did you mean ", "did you mean `{")
                                    .replace('?', "}`?")
                            })
                            .unwrap_or_else(|| {
                                format!(
                                    "placeholders are {}; write `{{{{` for a literal brace",
                                    braces(allowed)
                                )
                            }),
                    )
                };
                self.error(
                    start..start + name.len() + 2,
                    format!("unknown placeholder `{{{name}}}`"),
                    hint,
                );
            }
        }
        text.clone()
    }

    fn argv(&mut self, value: &Spanned<Vec<S>>, key: &str, allowed: &[&str]) -> Vec<String> {
        if value.get_ref().is_empty() {
            self.error(
                value.span(),
                format!("`{key}` is empty"),
                Some(
                    "give the program and its arguments, e.g. [\"./deploy.sh\", \"{region}\"]"
                        .into(),
                ),
            );
        }
        value
            .get_ref()
            .iter()
            .map(|a| self.template(a, allowed))
            .collect()
    }

    fn required(
        &mut self,
        value: &Option<S>,
        table_span: Range<usize>,
        table: &str,
        key: &str,
    ) -> String {
        match value {
            Some(v) if !v.get_ref().trim().is_empty() => v.get_ref().clone(),
            Some(v) => {
                self.error(v.span(), format!("`{table}.{key}` is empty"), None);
                String::new()
            }
            None => {
                self.error(
                    table_span,
                    format!("`[{table}]` has no `{key}`"),
                    Some(format!("add `{key} = \"…\"` to [{table}]")),
                );
                String::new()
            }
        }
    }

    fn build(
        &mut self,
        raw: RawConfig,
        path: &Path,
        base_dir: &Path,
        state_dir_override: Option<&Path>,
    ) -> Option<Config> {
        let deploy_vars: &[&str] = placeholder::NAMES;
        let no_image: Vec<&str> = placeholder::NAMES
            .iter()
            .copied()
            .filter(|n| *n != "image")
            .collect();

        // [app]
        let (app_name, version) = match &raw.app {
            None => {
                self.error(
                    0..0,
                    "missing `[app]` table",
                    Some("add [app] with name = \"your-app\"".into()),
                );
                (String::new(), VersionSource::GitShort)
            }
            Some(app) => {
                let name = self.required(&app.get_ref().name, app.span(), "app", "name");
                let version = match &app.get_ref().version {
                    None => VersionSource::GitShort,
                    Some(v) => match v.get_ref().as_str() {
                        "git-short" => VersionSource::GitShort,
                        "git-sha" => VersionSource::GitSha,
                        "git-describe" => VersionSource::GitDescribe,
                        other => match other.strip_prefix("env:") {
                            Some(var) if !var.is_empty() => VersionSource::Env(var.to_string()),
                            _ => {
                                let hint =
                                    hint_for(other, &["git-short", "git-sha", "git-describe"])
                                        .unwrap_or_else(|| {
                                            "use git-short, git-sha, git-describe or env:VAR".into()
                                        });
                                self.error(
                                    v.span(),
                                    format!("invalid version source `{other}`"),
                                    Some(hint),
                                );
                                VersionSource::GitShort
                            }
                        },
                    },
                };
                (name, version)
            }
        };

        // [target]
        let target = match &raw.target {
            None => {
                self.error(
                    0..0,
                    "missing `[target]` table",
                    Some("add [target] with adapter = \"fly\", \"kubernetes\" or \"exec\"".into()),
                );
                None
            }
            Some(t) => self.target(t, &no_image, deploy_vars),
        };

        // [state]
        let state = {
            let rs = raw.state.as_ref().map(|s| s.get_ref());
            let dir = rs
                .and_then(|s| s.dir.as_ref())
                .map(|d| d.get_ref().clone())
                .unwrap_or_else(|| ".shipgate".into());
            let store = self.choice(
                &rs.and_then(|s| s.store.clone()),
                "state store",
                &[("file", StoreKind::File), ("git", StoreKind::Git)],
                StoreKind::File,
            );
            let dir = match state_dir_override {
                Some(d) => d.to_path_buf(),
                None => {
                    let d = PathBuf::from(&dir);
                    if d.is_absolute() {
                        d
                    } else {
                        base_dir.join(d)
                    }
                }
            };
            StateConfig {
                dir,
                store,
                remote: rs
                    .and_then(|s| s.remote.as_ref())
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_else(|| "origin".into()),
                branch: rs
                    .and_then(|s| s.branch.as_ref())
                    .map(|r| r.get_ref().clone())
                    .unwrap_or_else(|| "shipgate/ledger".into()),
            }
        };

        // [defaults]
        let on_failure_choices = [
            ("rollback", OnFailure::Rollback),
            ("rollback-stage", OnFailure::RollbackStage),
            ("rollback-region", OnFailure::RollbackRegion),
            ("continue", OnFailure::Continue),
        ];
        let defaults = {
            let d = raw.defaults.as_ref();
            let get = |f: fn(&RawDefaults) -> &Option<S>| d.and_then(|d| f(d).clone());
            Defaults {
                timeout: self.timeout(&get(|d| &d.timeout), "timeout", DEFAULT_TIMEOUT),
                bake: self.duration(&get(|d| &d.bake), "bake", Duration::ZERO),
                command_timeout: self.timeout(
                    &get(|d| &d.command_timeout),
                    "command_timeout",
                    DEFAULT_COMMAND_TIMEOUT,
                ),
                on_failure: self.choice(
                    &get(|d| &d.on_failure),
                    "on_failure",
                    &on_failure_choices,
                    OnFailure::Rollback,
                ),
                verify_rollback: d.and_then(|d| d.verify_rollback).unwrap_or(true),
                max_parallel: self.count(d.and_then(|d| d.max_parallel.as_ref()), "max_parallel", 0)
                    as usize,
            }
        };

        // [gate.*]
        let mut gates = BTreeMap::new();
        for (name, gate) in &raw.gate {
            if let Some(g) = self.gate(name, gate) {
                gates.insert(name.get_ref().clone(), g);
            }
        }

        // [[stage]]
        if raw.stage.is_empty() {
            self.error(
                0..0,
                "the pipeline has no `[[stage]]`",
                Some("add [[stage]] with name = \"canary\" and regions = [\"…\"]".into()),
            );
        }
        let mut stages = Vec::new();
        let mut stage_names: HashMap<String, Range<usize>> = HashMap::new();
        let mut region_owner: HashMap<String, String> = HashMap::new();
        let gate_names: Vec<&str> = raw.gate.keys().map(|k| k.get_ref().as_str()).collect();
        for stage in &raw.stage {
            let rs = stage.get_ref();
            let name = self.required(&rs.name, stage.span(), "stage", "name");
            if let Some(n) = &rs.name {
                if let Some(_first) = stage_names.get(&name) {
                    self.error(
                        n.span(),
                        format!("stage `{name}` is defined twice"),
                        Some("give each [[stage]] its own name".into()),
                    );
                } else if !name.is_empty() {
                    stage_names.insert(name.clone(), n.span());
                }
                if name == "policy-override" {
                    self.error(
                        n.span(),
                        "stage name `policy-override` is reserved",
                        Some("it names the approval of a policy override; rename the stage".into()),
                    );
                }
                if name.contains(',') || name.chars().any(char::is_whitespace) {
                    self.error(
                        n.span(),
                        format!("stage name `{name}` contains a space or comma"),
                        None,
                    );
                }
            }
            let mut regions = Vec::new();
            match &rs.regions {
                None => self.error(
                    stage.span(),
                    format!("stage `{name}` has no `regions`"),
                    Some("add regions = [\"…\"]".into()),
                ),
                Some(list) if list.get_ref().is_empty() => self.error(
                    list.span(),
                    format!("stage `{name}` has no regions"),
                    Some("a stage needs at least one region".into()),
                ),
                Some(list) => {
                    for r in list.get_ref() {
                        let region = r.get_ref().clone();
                        if !valid_region(&region) {
                            self.error(
                                r.span(),
                                format!("invalid region name `{region}`"),
                                Some("use letters, digits, '.', '_' and '-'".into()),
                            );
                        } else if let Some(owner) = region_owner.get(&region) {
                            let msg = if *owner == name {
                                format!("region `{region}` is listed twice in stage `{name}`")
                            } else {
                                format!(
                                    "region `{region}` is in two stages: `{owner}` and `{name}`"
                                )
                            };
                            self.error(
                                r.span(),
                                msg,
                                Some("a region belongs to exactly one stage".into()),
                            );
                        } else {
                            region_owner.insert(region.clone(), name.clone());
                        }
                        regions.push(region);
                    }
                }
            }
            let stage_gates = self.gate_refs(&rs.gates, &gate_names, &name, "");
            let preflight = self.gate_refs(&rs.preflight, &gate_names, &name, "preflight ");
            let diags_before = self.diags.len();
            let steps = self.steps(rs, &name);
            if let (Some(p), None) = (&rs.step_pause, &rs.steps) {
                self.error(
                    p.span(),
                    format!("stage `{name}` has `step_pause` but no `steps`"),
                    Some("add steps = [5, 25, 50, 100], or remove step_pause".into()),
                );
            }
            stages.push(Stage {
                name,
                regions,
                gates: stage_gates,
                preflight,
                timeout: self.timeout(&rs.timeout, "timeout", defaults.timeout),
                bake: self.duration(&rs.bake, "bake", defaults.bake),
                command_timeout: self.timeout(
                    &rs.command_timeout,
                    "command_timeout",
                    defaults.command_timeout,
                ),
                on_failure: self.choice(
                    &rs.on_failure,
                    "on_failure",
                    &on_failure_choices,
                    defaults.on_failure,
                ),
                max_parallel: self.count(
                    rs.max_parallel.as_ref(),
                    "max_parallel",
                    defaults.max_parallel as i64,
                ) as usize,
                verify_rollback: rs.verify_rollback.unwrap_or(defaults.verify_rollback),
                approval: rs.approval.as_ref().map(|a| self.approval(a)),
                steps,
                step_pause: self.timeout(&rs.step_pause, "step_pause", DEFAULT_STEP_PAUSE),
            });
            // The stage timeout covers the deploy, the gates and the bake: a bake as long as the
            // timeout can only end in a timed-out stage (and a rollback).
            // (Only when both durations were read: a bad one is reported already, and its
            // fallback must not be quoted as if it were the file's.)
            if let Some(st) = stages.last().filter(|st| {
                self.diags.len() == diags_before
                    && st.bake + steps_pause(st) >= st.timeout
                    && !st.timeout.is_zero()
            }) {
                let span = rs
                    .bake
                    .as_ref()
                    .or(rs.timeout.as_ref())
                    .map(|v| v.span())
                    .unwrap_or_else(|| stage.span());
                let msg = if st.stepped() {
                    format!(
                        "stage `{}` pauses {} at each of its {} steps before 100 % and bakes for {}, but times out after {}: it can never succeed",
                        st.name,
                        humantime::format_duration(st.step_pause),
                        st.steps.len() - 1,
                        humantime::format_duration(st.bake),
                        humantime::format_duration(st.timeout)
                    )
                } else {
                    format!(
                        "stage `{}` bakes for {} but times out after {}: it can never succeed",
                        st.name,
                        humantime::format_duration(st.bake),
                        humantime::format_duration(st.timeout)
                    )
                };
                self.error(
                    span,
                    msg,
                    Some(
                        "make `timeout` longer than `bake` plus the time a deploy takes (the \
                         timeout covers the deploy, the gates and the bake)"
                            .into(),
                    ),
                );
            }
        }
        self.judge_baselines(&raw, &stages, &gates);

        // [notify]
        let mut notify = NotifyConfig::default();
        if let Some(n) = &raw.notify {
            notify.slack = n
                .slack
                .as_ref()
                .map(|s| self.sink(s, "notify.slack", Priority::P2));
            notify.discord = n
                .discord
                .as_ref()
                .map(|s| self.sink(s, "notify.discord", Priority::P1));
        }

        // [events]
        let events = raw.events.as_ref().map(|e| self.events(e));
        // [[window]], [[freeze]], [policy]
        let stage_list: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
        let windows = raw
            .window
            .iter()
            .enumerate()
            .filter_map(|(i, w)| self.window(i, w, &stage_list))
            .collect();
        let freezes = raw
            .freeze
            .iter()
            .enumerate()
            .filter_map(|(i, f)| self.freeze(i, f, &stage_list))
            .collect();
        let policy = PolicyConfig {
            override_requires: raw
                .policy
                .as_ref()
                .map(|p| {
                    self.choice(
                        &p.get_ref().override_requires,
                        "`[policy] override_requires`",
                        &[
                            ("reason", OverrideRequires::Reason),
                            ("approval", OverrideRequires::Approval),
                        ],
                        OverrideRequires::Reason,
                    )
                })
                .unwrap_or_default(),
            override_timeout: raw
                .policy
                .as_ref()
                .map(|p| {
                    self.duration(
                        &p.get_ref().override_timeout,
                        "policy.override_timeout",
                        PolicyConfig::default().override_timeout,
                    )
                })
                .unwrap_or(PolicyConfig::default().override_timeout),
        };
        // [github]
        let github = raw
            .github
            .as_ref()
            .map(|g| self.github(g))
            .unwrap_or_default();

        // [approvals]
        let approvals = raw
            .approvals
            .as_ref()
            .map(|a| self.approvals(a, base_dir))
            .unwrap_or_default();

        let target = target?;
        Some(Config {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            app: AppConfig {
                name: app_name,
                version,
            },
            target,
            state,
            defaults,
            stages,
            gates,
            notify,
            events,
            github,
            windows,
            freezes,
            policy,
            approvals,
        })
    }

    /// A stage's `steps`: whole percentages in 1..=100, strictly increasing, the last 100.
    fn steps(&mut self, rs: &RawStage, stage: &str) -> Vec<u8> {
        let Some(list) = &rs.steps else {
            return Vec::new();
        };
        let hint = || {
            Some(
                "e.g. steps = [5, 25, 50, 100]: the new version's share in percent, rising to 100"
                    .to_string(),
            )
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                format!("stage `{stage}` has empty `steps`"),
                hint(),
            );
            return Vec::new();
        }
        let before = self.diags.len();
        let mut steps = Vec::new();
        for n in list.get_ref() {
            let v = *n.get_ref();
            if !(1..=100).contains(&v) {
                self.error(
                    n.span(),
                    format!("step `{v}` is not a percentage between 1 and 100"),
                    hint(),
                );
            } else if steps.last().is_some_and(|&last: &u8| i64::from(last) >= v) {
                self.error(
                    n.span(),
                    format!(
                        "step `{v}` does not rise above the step before it ({})",
                        steps.last().copied().unwrap_or_default()
                    ),
                    Some("steps must be strictly increasing, e.g. [5, 25, 50, 100]".into()),
                );
            } else {
                steps.push(v as u8);
            }
        }
        if self.diags.len() == before && steps.last() != Some(&100) {
            let last = list
                .get_ref()
                .last()
                .map(|n| n.span())
                .unwrap_or(list.span());
            self.error(
                last,
                format!("the last step of stage `{stage}` must be 100"),
                Some("a stepped stage ends with the new version on every instance: end steps with 100".into()),
            );
        }
        if self.diags.len() == before {
            steps
        } else {
            Vec::new()
        }
    }

    /// A stage's `approval = { … }`.
    fn approval(&mut self, a: &Spanned<RawApproval>) -> Approval {
        let ra = a.get_ref();
        let required = match &ra.required {
            None => 1,
            Some(n) if !(1..=100).contains(n.get_ref()) => {
                self.error(
                    n.span(),
                    format!("`required` must be between 1 and 100, not {}", n.get_ref()),
                    Some(
                        "the number of distinct people who must approve, e.g. required = 1".into(),
                    ),
                );
                1
            }
            Some(n) => *n.get_ref() as u32,
        };
        Approval {
            required,
            timeout: self.timeout(&ra.timeout, "timeout", DEFAULT_APPROVAL_TIMEOUT),
            remind_every: self.opt_timeout(&ra.remind_every, "remind_every"),
            on_timeout: self.choice(
                &ra.on_timeout,
                "on_timeout",
                &[("stop", OnTimeout::Stop), ("rollback", OnTimeout::Rollback)],
                OnTimeout::Stop,
            ),
        }
    }

    /// `[approvals]`: the allowed-signers file must exist and list at least one key.
    fn approvals(&mut self, a: &Spanned<RawApprovals>, base_dir: &Path) -> ApprovalsConfig {
        let ra = a.get_ref();
        let allowed_signers = ra.allowed_signers.as_ref().and_then(|f| {
            let path = base_dir.join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) if crate::approvals::signers_listed(&text) > 0 => Some(path),
                Ok(_) => {
                    self.error(
                        f.span(),
                        format!("the allowed signers file `{}` lists no key", f.get_ref()),
                        Some("add lines like `alice@example.com namespaces=\"shipgate\" ssh-ed25519 AAAA…`".into()),
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        f.span(),
                        format!("cannot read the allowed signers file `{}`: {e}", f.get_ref()),
                        Some("the path is relative to the pipeline file's directory; the file is in the OpenSSH allowed-signers format (as for git's signed commits)".into()),
                    );
                    None
                }
            }
        });
        ApprovalsConfig {
            allowed_signers,
            self_approval: ra.self_approval.unwrap_or(false),
        }
    }

    fn count(&mut self, value: Option<&Spanned<i64>>, key: &str, default: i64) -> i64 {
        match value {
            None => default,
            Some(v) if *v.get_ref() < 0 => {
                self.error(v.span(), format!("`{key}` must not be negative"), None);
                default
            }
            Some(v) => *v.get_ref(),
        }
    }

    fn target(
        &mut self,
        t: &Spanned<RawTarget>,
        no_image: &[&str],
        deploy_vars: &[&str],
    ) -> Option<TargetConfig> {
        let rt = t.get_ref();
        let adapter = match &rt.adapter {
            None => {
                self.error(
                    t.span(),
                    "`[target]` has no `adapter`",
                    Some("add adapter = \"fly\", \"kubernetes\" or \"exec\"".into()),
                );
                return None;
            }
            Some(a) => {
                let choices = [
                    ("fly", AdapterKind::Fly),
                    ("kubernetes", AdapterKind::Kubernetes),
                    ("exec", AdapterKind::Exec),
                ];
                match choices.iter().find(|(n, _)| n == a.get_ref()) {
                    Some((_, k)) => *k,
                    None => {
                        let hint = hint_for(a.get_ref(), &["fly", "kubernetes", "exec"])
                            .unwrap_or_else(|| "use fly, kubernetes or exec".into());
                        self.error(
                            a.span(),
                            format!("unknown adapter `{}`", a.get_ref()),
                            Some(hint),
                        );
                        return None;
                    }
                }
            }
        };
        let image = rt.image.as_ref().map(|i| self.template(i, no_image));
        if matches!(adapter, AdapterKind::Fly | AdapterKind::Kubernetes) && image.is_none() {
            self.error(
                t.span(),
                format!("the {} adapter needs `image` in [target]", adapter.as_str()),
                Some("add image = \"registry.example.com/app:{version}\"".into()),
            );
        }
        let missing = |this: &mut Self, section: &str| {
            this.error(
                t.span(),
                format!(
                    "adapter `{}` needs a `[target.{section}]` section",
                    adapter.as_str()
                ),
                Some(format!("add [target.{section}] to {}", "the pipeline file")),
            );
        };
        let fly = rt.fly.as_ref().map(|f| {
            let rf = f.get_ref();
            FlyConfig {
                app: self.required(&rf.app, f.span(), "target.fly", "app"),
                strategy: rf.strategy.as_ref().map(|s| s.get_ref().clone()),
                wait_timeout: self.opt_timeout(&rf.wait_timeout, "wait_timeout"),
                bin: rf.bin.as_ref().map(|b| b.get_ref().clone()),
                args: rf
                    .args
                    .iter()
                    .map(|a| self.template(a, deploy_vars))
                    .collect(),
            }
        });
        let kubernetes = rt.kubernetes.as_ref().map(|k| {
            let rk = k.get_ref();
            KubernetesConfig {
                deployment: self.required(
                    &rk.deployment,
                    k.span(),
                    "target.kubernetes",
                    "deployment",
                ),
                container: self.required(&rk.container, k.span(), "target.kubernetes", "container"),
                namespace: rk.namespace.as_ref().map(|n| self.template(n, deploy_vars)),
                context: rk.context.as_ref().map(|c| self.template(c, deploy_vars)),
                bin: rk.bin.as_ref().map(|b| b.get_ref().clone()),
                traffic: self.choice(
                    &rk.traffic,
                    "traffic",
                    &[
                        ("replicas", Traffic::Replicas),
                        ("gateway-api", Traffic::GatewayApi),
                    ],
                    Traffic::Replicas,
                ),
                route: rk.route.as_ref().map(|r| r.get_ref().clone()),
                service: rk
                    .service
                    .as_ref()
                    .or(rk.deployment.as_ref())
                    .map(|s| s.get_ref().clone())
                    .unwrap_or_default(),
            }
        });
        if let Some((k, kc)) = rt.kubernetes.as_ref().zip(kubernetes.as_ref()) {
            let rk = k.get_ref();
            match (kc.traffic, &rk.route) {
                (Traffic::GatewayApi, None) => self.error(
                    rk.traffic.as_ref().map(|t| t.span()).unwrap_or(k.span()),
                    "`traffic = \"gateway-api\"` needs `route`",
                    Some("add route = \"<the HTTPRoute's name>\" to [target.kubernetes]".into()),
                ),
                (Traffic::Replicas, Some(r)) => self.error(
                    r.span(),
                    "`route` is only used with `traffic = \"gateway-api\"`",
                    Some("add traffic = \"gateway-api\", or remove route".into()),
                ),
                _ => {}
            }
        }
        let with_weight: Vec<&str> = deploy_vars
            .iter()
            .copied()
            .chain([placeholder::WEIGHT])
            .collect();
        let exec = rt.exec.as_ref().map(|e| {
            let re = e.get_ref();
            let deploy = match &re.deploy {
                Some(d) => self.argv(d, "target.exec.deploy", &with_weight),
                None => {
                    self.error(
                        e.span(),
                        "`[target.exec]` has no `deploy` command",
                        Some("add deploy = [\"./deploy.sh\", \"{region}\", \"{version}\"]".into()),
                    );
                    Vec::new()
                }
            };
            ExecConfig {
                deploy,
                current: re
                    .current
                    .as_ref()
                    .map(|c| self.argv(c, "target.exec.current", deploy_vars)),
                rollback: re
                    .rollback
                    .as_ref()
                    .map(|r| self.argv(r, "target.exec.rollback", &with_weight)),
            }
        });
        match adapter {
            AdapterKind::Fly if fly.is_none() => missing(self, "fly"),
            AdapterKind::Kubernetes if kubernetes.is_none() => missing(self, "kubernetes"),
            AdapterKind::Exec if exec.is_none() => missing(self, "exec"),
            _ => {}
        }
        Some(TargetConfig {
            adapter,
            image,
            fly,
            kubernetes,
            exec,
        })
    }

    /// A `type = "json"` gate: an http request and a JSONPath test.
    fn json_gate(&mut self, name: &S, gate: &Spanned<RawGate>, vars: &[&str]) -> GateKind {
        let g = gate.get_ref();
        let table = format!("gate.{}", name.get_ref());
        let url = self.required(&g.url, gate.span(), &table, "url");
        if let Some(u) = &g.url {
            self.template(u, vars);
            self.url(u);
        }
        let mut headers = BTreeMap::new();
        if let Some(h) = &g.headers {
            for (k, v) in h.get_ref() {
                headers.insert(self.template(k, vars), self.template(v, vars));
            }
        }
        let method = g
            .method
            .as_ref()
            .map(|m| m.get_ref().to_ascii_uppercase())
            .unwrap_or_else(|| "GET".into());
        if let Some(m) = &g.method {
            if !["GET", "POST", "PUT", "OPTIONS"].contains(&method.as_str()) {
                self.error(
                    m.span(),
                    format!("unsupported HTTP method `{}` for a json gate", m.get_ref()),
                    Some("use GET, POST, PUT or OPTIONS (a json gate reads the body)".into()),
                );
            }
        }
        let path = self.required(&g.path, gate.span(), &table, "path");
        if let Some(p) = &g.path {
            if let Err(e) = serde_json_path::JsonPath::parse(p.get_ref()) {
                self.error(
                    p.span(),
                    format!("invalid JSONPath `{}`: {e}", p.get_ref()),
                    Some("write it like $.checks.db.status or $.items[0].ready (RFC 9535)".into()),
                );
            }
        }
        let min = g.min.as_ref().map(|m| *m.get_ref());
        let max = g.max.as_ref().map(|m| *m.get_ref());
        let equals = g.equals.as_ref().map(|e| self.template(e, vars));
        if equals.is_none() && min.is_none() && max.is_none() {
            self.error(
                gate.span(),
                format!("json gate `{}` has neither `equals` nor `min`/`max`", name.get_ref()),
                Some("add equals = \"ok\", or max = …/min = … for a number: a gate with no test can never fail".into()),
            );
        }
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                self.error(
                    g.min.as_ref().unwrap().span(),
                    format!("`min` ({lo}) is greater than `max` ({hi})"),
                    None,
                );
            }
        }
        GateKind::Json(JsonGate {
            url,
            method,
            headers,
            path,
            equals,
            min,
            max,
        })
    }

    /// The gate names a stage lists (`gates` or `preflight`), each checked to exist.
    fn gate_refs(
        &mut self,
        list: &[S],
        gate_names: &[&str],
        stage: &str,
        what: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for g in list {
            if !gate_names.contains(&g.get_ref().as_str()) {
                let hint = hint_for(g.get_ref(), gate_names).unwrap_or_else(|| {
                    if gate_names.is_empty() {
                        format!("define it as [gate.{}]", g.get_ref())
                    } else {
                        format!(
                            "define [gate.{}], or use one of: {}",
                            g.get_ref(),
                            gate_names.join(", ")
                        )
                    }
                });
                self.error(
                    g.span(),
                    format!("unknown {what}gate `{}` in stage `{stage}`", g.get_ref()),
                    Some(hint),
                );
            }
            out.push(g.get_ref().clone());
        }
        out
    }

    fn gate(&mut self, name: &S, gate: &Spanned<RawGate>) -> Option<Gate> {
        let g = gate.get_ref();
        let types = [
            "http",
            "dns",
            "tcp",
            "prometheus",
            "command",
            "alertmanager",
            "json",
            "judge",
        ];
        let Some(kind_name) = &g.kind else {
            self.error(
                name.span(),
                format!("gate `{}` has no `type`", name.get_ref()),
                Some(format!("add type = one of {}", types.join(", "))),
            );
            return None;
        };
        let kind_str = kind_name.get_ref().as_str();
        if !types.contains(&kind_str) {
            let hint = hint_for(kind_str, &types)
                .unwrap_or_else(|| format!("use one of: {}", types.join(", ")));
            self.error(
                kind_name.span(),
                format!("unknown gate type `{kind_str}`"),
                Some(hint),
            );
            return None;
        }
        // Which type-specific keys are present, and which the type allows.
        let present: [(&str, Option<Range<usize>>); 27] = [
            ("matchers", g.matchers.as_ref().map(|v| v.span())),
            ("path", g.path.as_ref().map(|v| v.span())),
            ("equals", g.equals.as_ref().map(|v| v.span())),
            ("url", g.url.as_ref().map(|v| v.span())),
            ("method", g.method.as_ref().map(|v| v.span())),
            ("headers", g.headers.as_ref().map(|v| v.span())),
            ("expect_status", g.expect_status.as_ref().map(|v| v.span())),
            ("body_contains", g.body_contains.as_ref().map(|v| v.span())),
            ("max_latency", g.max_latency.as_ref().map(|v| v.span())),
            ("host", g.host.as_ref().map(|v| v.span())),
            ("addresses", g.addresses.as_ref().map(|v| v.span())),
            ("address", g.address.as_ref().map(|v| v.span())),
            ("query", g.query.as_ref().map(|v| v.span())),
            ("min", g.min.as_ref().map(|v| v.span())),
            ("max", g.max.as_ref().map(|v| v.span())),
            ("on_empty", g.on_empty.as_ref().map(|v| v.span())),
            ("run", g.run.as_ref().map(|v| v.span())),
            ("errors", g.errors.as_ref().map(|v| v.span())),
            ("requests", g.requests.as_ref().map(|v| v.span())),
            ("baseline", g.baseline.as_ref().map(|v| v.span())),
            ("window", g.window.as_ref().map(|v| v.span())),
            ("step", g.step.as_ref().map(|v| v.span())),
            ("direction", g.direction.as_ref().map(|v| v.span())),
            ("max_ratio", g.max_ratio.as_ref().map(|v| v.span())),
            ("confidence", g.confidence.as_ref().map(|v| v.span())),
            ("min_samples", g.min_samples.as_ref().map(|v| v.span())),
            (
                "on_inconclusive",
                g.on_inconclusive.as_ref().map(|v| v.span()),
            ),
        ];
        let allowed: &[&str] = match kind_str {
            "http" => &[
                "url",
                "method",
                "headers",
                "expect_status",
                "body_contains",
                "max_latency",
            ],
            "dns" => &["host", "addresses"],
            "tcp" => &["address"],
            "prometheus" => &["url", "query", "min", "max", "on_empty"],
            "judge" => judge::KEYS,
            "alertmanager" => &["url", "matchers"],
            "json" => &["url", "method", "headers", "path", "equals", "min", "max"],
            _ => &["run"],
        };
        for (key, span) in &present {
            if let Some(span) = span {
                if !allowed.contains(key) {
                    self.error(
                        span.clone(),
                        format!("`{key}` is not a key of a {kind_str} gate"),
                        Some(format!("a {kind_str} gate takes: {}", allowed.join(", "))),
                    );
                }
            }
        }
        // Gates run inside a region of a stage of a deploy: every placeholder is available.
        let vars = placeholder::NAMES;
        let need = |this: &mut Self, v: &Option<S>, key: &str| -> String {
            this.required(v, gate.span(), &format!("gate.{}", name.get_ref()), key)
        };
        let kind = match kind_str {
            "http" => {
                let url = need(self, &g.url, "url");
                if let Some(u) = &g.url {
                    self.template(u, vars);
                    self.url(u);
                }
                let mut headers = BTreeMap::new();
                if let Some(h) = &g.headers {
                    for (k, v) in h.get_ref() {
                        headers.insert(self.template(k, vars), self.template(v, vars));
                    }
                }
                let mut expect_status = Vec::new();
                if let Some(list) = &g.expect_status {
                    for s in list.get_ref() {
                        match u16::try_from(*s.get_ref()) {
                            Ok(code) if (100..=599).contains(&code) => expect_status.push(code),
                            _ => self.error(
                                s.span(),
                                format!("invalid HTTP status `{}`", s.get_ref()),
                                Some("use codes from 100 to 599".into()),
                            ),
                        }
                    }
                }
                let method = g
                    .method
                    .as_ref()
                    .map(|m| m.get_ref().to_ascii_uppercase())
                    .unwrap_or_else(|| "GET".into());
                if let Some(m) = &g.method {
                    if !["GET", "HEAD", "POST", "PUT", "OPTIONS"].contains(&method.as_str()) {
                        self.error(
                            m.span(),
                            format!("unsupported HTTP method `{}`", m.get_ref()),
                            Some("use GET, HEAD, POST, PUT or OPTIONS".into()),
                        );
                    }
                }
                GateKind::Http(HttpGate {
                    url,
                    method,
                    headers,
                    expect_status,
                    body_contains: g.body_contains.as_ref().map(|b| self.template(b, vars)),
                    max_latency: self.opt_timeout(&g.max_latency, "max_latency"),
                })
            }
            "dns" => {
                let host = need(self, &g.host, "host");
                if let Some(h) = &g.host {
                    self.template(h, vars);
                }
                let addresses = g
                    .addresses
                    .as_ref()
                    .map(|a| a.get_ref().iter().map(|x| self.template(x, vars)).collect())
                    .unwrap_or_default();
                GateKind::Dns(DnsGate { host, addresses })
            }
            "tcp" => {
                let address = need(self, &g.address, "address");
                if let Some(a) = &g.address {
                    self.template(a, vars);
                    if !a.get_ref().contains(':') {
                        self.error(
                            a.span(),
                            format!("address `{}` has no port", a.get_ref()),
                            Some("write host:port, e.g. db.internal:5432".into()),
                        );
                    }
                }
                GateKind::Tcp(TcpGate { address })
            }
            "prometheus" => {
                let url = need(self, &g.url, "url");
                if let Some(u) = &g.url {
                    self.template(u, vars);
                    self.url(u);
                }
                let query = need(self, &g.query, "query");
                if let Some(q) = &g.query {
                    self.template(q, vars);
                    self.promql(q, &format!("gate `{}`", name.get_ref()));
                }
                let min = g.min.as_ref().map(|m| *m.get_ref());
                let max = g.max.as_ref().map(|m| *m.get_ref());
                if min.is_none() && max.is_none() {
                    self.error(gate.span(), format!("prometheus gate `{}` has neither `min` nor `max`", name.get_ref()), Some("add max = 0.05 (and/or min = …): a gate with no threshold can never fail".into()));
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        self.error(
                            g.min.as_ref().unwrap().span(),
                            format!("`min` ({lo}) is greater than `max` ({hi})"),
                            None,
                        );
                    }
                }
                let on_empty = self.choice(
                    &g.on_empty,
                    "on_empty",
                    &[("fail", OnEmpty::Fail), ("pass", OnEmpty::Pass)],
                    OnEmpty::Fail,
                );
                GateKind::Prometheus(PrometheusGate {
                    url,
                    query,
                    min,
                    max,
                    on_empty,
                })
            }
            "judge" => GateKind::Judge(self.judge_gate(name, gate)),
            "alertmanager" => {
                let url = need(self, &g.url, "url");
                if let Some(u) = &g.url {
                    self.template(u, vars);
                    self.url(u);
                }
                let mut matchers = Vec::new();
                match &g.matchers {
                    Some(list) if !list.get_ref().is_empty() => {
                        for m in list.get_ref() {
                            self.template(m, vars);
                            if let Err(why) = super::matchers::check_matcher(m.get_ref()) {
                                self.error(
                                    m.span(),
                                    why,
                                    Some("write matchers as Alertmanager does: label=\"value\", label=~\"regex\", label!=\"value\"".into()),
                                );
                            }
                            matchers.push(m.get_ref().clone());
                        }
                    }
                    other => self.error(
                        other.as_ref().map(|l| l.span()).unwrap_or_else(|| gate.span()),
                        format!("alertmanager gate `{}` has no `matchers`", name.get_ref()),
                        Some("add matchers = ['region=\"{region}\"', 'severity=~\"critical|page\"']: without one, any alert anywhere would trip it".into()),
                    ),
                }
                GateKind::Alertmanager(AlertmanagerGate { url, matchers })
            }
            "json" => self.json_gate(name, gate, vars),
            _ => {
                let run = match &g.run {
                    Some(r) => self.argv(r, &format!("gate.{}.run", name.get_ref()), vars),
                    None => {
                        self.error(
                            gate.span(),
                            format!("command gate `{}` has no `run`", name.get_ref()),
                            Some("add run = [\"./smoke.sh\", \"{region}\"]".into()),
                        );
                        Vec::new()
                    }
                };
                GateKind::Command(CommandGate { run })
            }
        };
        let severity = self.choice(
            &g.severity,
            "severity",
            &[("P0", Severity::P0), ("P1", Severity::P1)],
            Severity::P1,
        );
        let default_failures = if severity == Severity::P0 { 1 } else { 3 };
        let failures = match &g.failures {
            None => default_failures,
            Some(f) if *f.get_ref() < 1 || *f.get_ref() > 1000 => {
                self.error(
                    f.span(),
                    format!("`failures` must be between 1 and 1000, not {}", f.get_ref()),
                    None,
                );
                default_failures
            }
            Some(f) => *f.get_ref() as u32,
        };
        let interval = self.timeout(&g.interval, "interval", DEFAULT_INTERVAL);
        let timeout = self.timeout(&g.timeout, "timeout", DEFAULT_PROBE_TIMEOUT);
        Some(Gate {
            name: name.get_ref().clone(),
            kind,
            interval,
            timeout,
            delay: self.duration(&g.delay, "delay", Duration::ZERO),
            severity,
            failures,
        })
    }

    /// Checks a PromQL template (see [`super::promql::check_promql`]); an empty one is
    /// reported by `required` already.
    fn promql(&mut self, q: &S, what: &str) {
        if q.get_ref().trim().is_empty() {
            return;
        }
        if let Err(d) = super::promql::check_promql(q.get_ref(), q.span(), what) {
            self.diags.push(d);
        }
    }

    fn url(&mut self, u: &S) {
        let s = u.get_ref();
        if !(s.starts_with("http://") || s.starts_with("https://") || s.starts_with('{')) {
            self.error(
                u.span(),
                format!("URL `{s}` does not start with http:// or https://"),
                None,
            );
        }
    }

    fn sink(&mut self, s: &Spanned<RawSink>, table: &str, default: Priority) -> SinkConfig {
        let rs = s.get_ref();
        let webhook_env = self.required(&rs.webhook_env, s.span(), table, "webhook_env");
        let prios = [
            ("P0", Priority::P0),
            ("P1", Priority::P1),
            ("P2", Priority::P2),
            ("P3", Priority::P3),
        ];
        SinkConfig {
            webhook_env,
            min_priority: self.choice(&rs.min_priority, "priority", &prios, default),
        }
    }

    /// The stages a window or freeze names: each must exist.
    fn policy_stages(&mut self, list: &Option<Spanned<Vec<S>>>, stages: &[String]) -> Vec<String> {
        let Some(list) = list else { return Vec::new() };
        let names: Vec<&str> = stages.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for s in list.get_ref() {
            if names.contains(&s.get_ref().as_str()) {
                out.push(s.get_ref().clone());
            } else {
                let hint = hint_for(s.get_ref(), &names)
                    .unwrap_or_else(|| format!("stages: {}", names.join(", ")));
                self.error(
                    s.span(),
                    format!("no stage named `{}`", s.get_ref()),
                    Some(hint),
                );
            }
        }
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                "`stages` is empty",
                Some("leave it out to mean every stage".into()),
            );
        }
        out
    }

    fn window(&mut self, i: usize, w: &Spanned<RawWindow>, stages: &[String]) -> Option<Window> {
        let rw = w.get_ref();
        let name = rw
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("window {}", i + 1));
        let mut ok = true;
        let mut days = Vec::new();
        match &rw.days {
            None => {
                self.error(
                    w.span(),
                    format!("window `{name}` has no `days`"),
                    Some("add days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\"]".into()),
                );
                ok = false;
            }
            Some(list) => {
                const DAYS: &[&str] = &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                const NAMES: &[&str] = &[
                    "Mon",
                    "Tue",
                    "Wed",
                    "Thu",
                    "Fri",
                    "Sat",
                    "Sun",
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday",
                ];
                for d in list.get_ref() {
                    // `Mon` or `Monday`, in any case.
                    match d.get_ref().parse::<chrono::Weekday>() {
                        Ok(day) => days.push(day),
                        _ => {
                            let hint = hint_for(d.get_ref(), NAMES)
                                .unwrap_or_else(|| format!("days are {}", DAYS.join(", ")));
                            self.error(
                                d.span(),
                                format!("invalid day `{}`", d.get_ref()),
                                Some(hint),
                            );
                            ok = false;
                        }
                    }
                }
                if list.get_ref().is_empty() {
                    self.error(list.span(), format!("window `{name}` has no days"), None);
                    ok = false;
                }
            }
        }
        let time = |this: &mut Self, v: &Option<S>, key: &str| -> Option<chrono::NaiveTime> {
            let Some(v) = v else {
                this.error(
                    w.span(),
                    format!("window `{name}` has no `{key}`"),
                    Some(format!("add {key} = \"09:00\" (24-hour HH:MM)")),
                );
                return None;
            };
            match chrono::NaiveTime::parse_from_str(v.get_ref(), "%H:%M") {
                Ok(t) if v.get_ref().len() == 5 => Some(t),
                _ => {
                    this.error(
                        v.span(),
                        format!("invalid time `{}`", v.get_ref()),
                        Some("write 24-hour HH:MM, e.g. \"09:00\" or \"16:30\"".into()),
                    );
                    None
                }
            }
        };
        let start = time(self, &rw.start, "start");
        let end = time(self, &rw.end, "end");
        if let (Some(s), Some(e), Some(v)) = (start, end, &rw.end) {
            if s == e {
                self.error(
                    v.span(),
                    format!("window `{name}` starts and ends at the same time"),
                    Some("an end before the start runs past midnight".into()),
                );
                ok = false;
            }
        }
        let tz = match &rw.tz {
            None => {
                self.error(
                    w.span(),
                    format!("window `{name}` has no `tz`"),
                    Some("add tz = \"Europe/London\" (an IANA time zone; \"UTC\" for UTC)".into()),
                );
                None
            }
            Some(t) => match t.get_ref().parse::<chrono_tz::Tz>() {
                Ok(tz) => Some((t.get_ref().clone(), tz)),
                Err(_) => {
                    let names: Vec<&str> =
                        chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
                    let hint = hint_for(t.get_ref(), &names).unwrap_or_else(|| {
                        "use an IANA time zone name such as Europe/London or America/New_York"
                            .into()
                    });
                    self.error(
                        t.span(),
                        format!("unknown time zone `{}`", t.get_ref()),
                        Some(hint),
                    );
                    None
                }
            },
        };
        let stages = self.policy_stages(&rw.stages, stages);
        let (Some(start), Some(end), Some((tz_name, tz)), true) = (start, end, tz, ok) else {
            return None;
        };
        Some(Window {
            name,
            days,
            start,
            end,
            tz_name,
            tz,
            stages,
        })
    }

    fn freeze(&mut self, i: usize, f: &Spanned<RawFreeze>, stages: &[String]) -> Option<Freeze> {
        let rf = f.get_ref();
        let name = rf
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| format!("freeze {}", i + 1));
        let instant = |this: &mut Self, v: &Option<S>, key: &str| {
            let Some(v) = v else {
                this.error(
                    f.span(),
                    format!("freeze `{name}` has no `{key}`"),
                    Some(format!(
                        "add {key} = \"2026-12-22T00:00:00-05:00\" (RFC 3339)"
                    )),
                );
                return None;
            };
            match chrono::DateTime::parse_from_rfc3339(v.get_ref()) {
                Ok(t) => Some((t, v.span())),
                Err(e) => {
                    this.error(
                        v.span(),
                        format!("invalid time `{}` ({e})", v.get_ref()),
                        Some(
                            "write RFC 3339 with its offset, e.g. \"2026-12-22T00:00:00-05:00\""
                                .into(),
                        ),
                    );
                    None
                }
            }
        };
        let from = instant(self, &rf.from, "from");
        let to = instant(self, &rf.to, "to");
        let stages = self.policy_stages(&rf.stages, stages);
        let ((from, _), (to, to_span)) = (from?, to?);
        if to <= from {
            self.error(
                to_span,
                format!("freeze `{name}` ends before it starts"),
                None,
            );
            return None;
        }
        Some(Freeze {
            name,
            from,
            to,
            reason: rf.reason.as_ref().map(|r| r.get_ref().clone()),
            stages,
        })
    }

    fn github(&mut self, g: &Spanned<RawGithub>) -> GithubConfig {
        let rg = g.get_ref();
        let deployments = self.choice(
            &rg.deployments,
            "`[github] deployments`",
            &[
                ("per-stage", DeploymentsMode::PerStage),
                ("per-region", DeploymentsMode::PerRegion),
                ("off", DeploymentsMode::Off),
            ],
            DeploymentsMode::PerStage,
        );
        let allowed: &[&str] = match deployments {
            DeploymentsMode::PerRegion => &["app", "stage", "region"],
            _ => &["app", "stage"],
        };
        let defaults = GithubConfig::default();
        let environment = match &rg.environment {
            Some(e) if e.get_ref().trim().is_empty() => {
                self.error(e.span(), "`[github] environment` is empty", None);
                defaults.environment.clone()
            }
            Some(e) => self.template(e, allowed),
            None if deployments == DeploymentsMode::PerRegion => "production-{region}".into(),
            None => defaults.environment.clone(),
        };
        let environment_url = rg.environment_url.as_ref().map(|u| {
            let text = self.template(u, allowed);
            if !(text.starts_with("https://") || text.starts_with("http://")) {
                self.error(
                    u.span(),
                    "`[github] environment_url` is not an http(s) URL",
                    Some("write it as https://…".into()),
                );
            }
            text
        });
        let token_env = match &rg.token_env {
            Some(t) if !valid_env_name(t.get_ref()) => {
                self.error(
                    t.span(),
                    format!("`{}` is not an environment variable name", t.get_ref()),
                    Some("use letters, digits and `_`, e.g. GITHUB_TOKEN".into()),
                );
                defaults.token_env.clone()
            }
            Some(t) => t.get_ref().clone(),
            None => defaults.token_env.clone(),
        };
        let repository = rg.repository.as_ref().and_then(|r| {
            if valid_repository(r.get_ref()) {
                Some(r.get_ref().clone())
            } else {
                self.error(
                    r.span(),
                    format!("`{}` is not a GitHub repository", r.get_ref()),
                    Some("write it as owner/name".into()),
                );
                None
            }
        });
        GithubConfig {
            deployments,
            environment,
            environment_url,
            token_env,
            repository,
        }
    }

    fn events(&mut self, e: &Spanned<RawEvents>) -> EventsConfig {
        let re = e.get_ref();
        if re.url.is_none() && re.url_env.is_none() {
            self.error(
                e.span(),
                "`[events]` has neither `url` nor `url_env`",
                Some("add url_env = \"SHIPGATE_EVENTS_URL\"".into()),
            );
        }
        if let Some(u) = &re.url {
            self.url(u);
        }
        let format = self.choice(
            &re.format,
            "event format",
            &[
                ("cloudevents", EventFormat::Cloudevents),
                ("plain", EventFormat::Plain),
            ],
            EventFormat::Cloudevents,
        );
        let signing = self.choice(
            &re.signing,
            "signing",
            &[
                ("standard-webhooks", Signing::StandardWebhooks),
                ("github", Signing::Github),
                ("none", Signing::None),
            ],
            Signing::None,
        );
        if signing != Signing::None && re.secret_env.is_none() {
            self.error(
                e.span(),
                "`[events]` signs events but has no `secret_env`",
                Some("add secret_env = \"SHIPGATE_EVENTS_SECRET\", or signing = \"none\"".into()),
            );
        }
        EventsConfig {
            url: re.url.as_ref().map(|u| u.get_ref().clone()),
            url_env: re.url_env.as_ref().map(|u| u.get_ref().clone()),
            format,
            signing,
            secret_env: re.secret_env.as_ref().map(|s| s.get_ref().clone()),
            source: re
                .source
                .as_ref()
                .map(|s| s.get_ref().clone())
                .unwrap_or_else(|| "shipgate".into()),
        }
    }
}

/// The time a stepped stage spends in its steps before the last one.
fn steps_pause(st: &Stage) -> Duration {
    st.step_pause * st.steps.len().saturating_sub(1) as u32
}

fn braces(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `owner/name` as GitHub allows them.
pub fn valid_repository(r: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(r.split_once('/'), Some((o, n)) if part(o) && part(n))
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
