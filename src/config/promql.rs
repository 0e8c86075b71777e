//! PromQL checked while `pipeline.toml` loads (issue 15 item 4): a syntax error is exit 2 from
//! `validate` and from `deploy` before the lock, never a gate that trips on `bad_data` after
//! every region changed (and then trips the rollback's verification on the same typo).
//!
//! A query is a template: its placeholders are rendered with [`sample_vars`] first. The
//! samples are plain identifiers, so a placeholder parses wherever a user may put one: inside
//! a label value (`region="{region}"`) or as part of a metric or label name (`{app}_requests`).

use std::ops::Range;

use super::load::Diagnostic;
use super::placeholder::Vars;

/// Sample values for every placeholder, to parse a query template.
pub fn sample_vars() -> Vars {
    let mut vars = Vars::new();
    for name in super::placeholder::NAMES {
        vars.set(name, format!("sample_{name}"));
    }
    vars
}

/// Parses the PromQL `template` (placeholders rendered with [`sample_vars`]). `span` is where
/// the query's value sits in the file (for file:line:col) and `what` names the field in the
/// message (``gate `errors` ``, ```requests` of gate `judge` ``). The error carries the
/// parser's message.
pub fn check_promql(template: &str, span: Range<usize>, what: &str) -> Result<(), Diagnostic> {
    let query = sample_vars().render(template);
    if query.trim().is_empty() {
        return Err(Diagnostic {
            span,
            message: format!("empty PromQL in {what}"),
            hint: None,
        });
    }
    match promql_parser::parser::parse(&query) {
        Ok(_) => Ok(()),
        Err(why) => Err(Diagnostic {
            span,
            message: format!("invalid PromQL in {what}: {}", why.trim()),
            hint: Some(
                "check the brackets, quotes and function names (promtool or Prometheus's query \
                 page shows where it breaks); placeholders such as {region} are filled in first"
                    .into(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str) -> Result<(), String> {
        check_promql(q, 0..1, "gate `errors`").map_err(|d| d.message)
    }

    #[test]
    fn the_spec_example_parses_with_its_placeholders() {
        check(r#"sum(rate(http_requests_total{code=~"5..",region="{region}"}[1m])) / sum(rate(http_requests_total{region="{region}"}[1m]))"#).unwrap();
        check(r#"{app}_up{stage="{stage}", version="{version}"} == 1"#).unwrap();
        check("1 + 1").unwrap();
    }

    #[test]
    fn a_typo_is_named_with_the_parsers_message() {
        let e = check(r#"sum(rate(http_requests_total{region="{region}"}[1m])"#).unwrap_err();
        assert!(e.starts_with("invalid PromQL in gate `errors`: "), "{e}");
        assert!(e.contains("unclosed left parenthesis"), "{e}");
        for bad in ["sum(x) by", "rate(x[1m]", "x{a=}", "", "  "] {
            assert!(check(bad).is_err(), "{bad:?} parsed");
        }
    }
}
