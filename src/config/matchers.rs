//! Alertmanager matchers (`region="{region}"`, `severity=~"critical|page"`), checked while
//! loading: a label name, an operator (`=`, `!=`, `=~`, `!~`), and a value, quoted or not;
//! a regex value must compile (Alertmanager anchors it, as shipgate checks it). Placeholders
//! are filled with sample values first.

/// Checks one matcher template; the error says what is wrong.
pub fn check_matcher(template: &str) -> Result<(), String> {
    let text = super::promql::sample_vars().render(template);
    let text = text.trim();
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "matcher `{template}` does not start with a label name"
        ));
    }
    let rest = text[name_end..].trim_start();
    let (op, value) = ["=~", "!~", "!=", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
        .ok_or_else(|| format!("matcher `{template}` has no operator (use =, !=, =~ or !~)"))?;
    let value = if let Some(inner) = value.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return Err(format!("matcher `{template}` has an unclosed quote"));
        };
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else if value.contains(|c: char| c.is_whitespace() || c == '"' || c == ',') {
        return Err(format!(
            "matcher `{template}`: quote a value with spaces, commas or quotes"
        ));
    } else {
        value.to_string()
    };
    if op.ends_with('~') {
        regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
            format!(
                "matcher `{template}` has an invalid regex: {}",
                one_line(&e.to_string())
            )
        })?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::check_matcher;

    #[test]
    fn matchers_are_checked() {
        for ok in [
            r#"region="{region}""#,
            r#"severity=~"critical|page""#,
            "env!=staging",
            r#"team !~ "db.*""#,
        ] {
            check_matcher(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            r#"="lhr""#,
            r#"region"lhr""#,
            r#"region="lhr"#,
            r#"severity=~"(critical""#,
            "region=a b",
        ] {
            assert!(check_matcher(bad).is_err(), "{bad} passed");
        }
    }
}
