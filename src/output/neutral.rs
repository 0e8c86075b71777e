//! The one neutraliser for text shipgate did not write (SPEC §7, "Output nobody else can write
//! into"): flag values, platform stderr, response bodies, payload fields, config strings and
//! history records all reach the terminal, the log and the GitHub runner only through here.
//!
//! - Control characters and escape sequences are shown visibly (`\x1b`, `\x07`, `\u{202e}`),
//!   so nothing can set a terminal's title, clear its screen, hide text or reorder it.
//! - Under GitHub Actions (`GITHUB_ACTIONS=true`) no line begins, after whitespace, with `::`
//!   (the runner's workflow-command syntax: `::stop-commands::` would silence every later
//!   `::error`/`::add-mask::` of shipgate) nor holds `##[` anywhere (its legacy syntax).
//!
//! Shipgate's own workflow commands are written by [`crate::report::github::command`], the only
//! writer that bypasses these rules. Shipgate's own colours are [`styled`] markers that only
//! this module turns into escape sequences: each holds a token drawn at start-up and never
//! printed, so text from elsewhere cannot forge one (a stray marker character is shown
//! visibly). Apart from styling, every pass is idempotent: the visible forms hold no control
//! character, no `::` at a line start and no `##[`.

use std::borrow::Cow;
use std::sync::OnceLock;

/// Shipgate's own styles for [`styled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Red,
    Yellow,
}

/// Starts a style marker; a token and the style's digit follow.
const MARK: char = '\u{e000}';

fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut rng = fastrand::Rng::new();
        (0..16).map(|_| rng.alphanumeric()).collect()
    })
}

/// `s` in `style`, for text printed through [`text`] (as [`crate::say!`] does): the markers
/// become escape sequences there, and nowhere else.
pub fn styled(style: Style, s: &str) -> String {
    let digit = match style {
        Style::Bold => '1',
        Style::Red => '2',
        Style::Yellow => '3',
    };
    format!("{MARK}{}{digit}{s}{MARK}{}0", token(), token())
}

/// If `rest` (just after a [`MARK`]) holds the token and a style digit: the escape sequence and
/// how many bytes the marker's tail takes.
fn style_escape(rest: &str) -> Option<(&'static str, usize)> {
    let tail = rest.strip_prefix(token())?;
    let sgr = match tail.chars().next()? {
        '0' => "\x1b[0m",
        '1' => "\x1b[1m",
        '2' => "\x1b[1;31m",
        '3' => "\x1b[1;33m",
        _ => return None,
    };
    Some((sgr, token().len() + 1))
}

/// Whether the runner parses our output for workflow commands.
pub fn in_github() -> bool {
    static GITHUB: OnceLock<bool> = OnceLock::new();
    *GITHUB.get_or_init(|| std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"))
}

/// Text for a person (one line or many): control characters visible, and under GitHub Actions
/// no line a workflow command.
pub fn text(s: &str) -> Cow<'_, str> {
    text_for(s, in_github())
}

/// [`text`] with the GitHub rules on or off (for tests and for callers that know).
pub fn text_for(s: &str, github: bool) -> Cow<'_, str> {
    if !needs_text(s, github) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // A CRLF line ending is a line ending, not a control character to show.
        let line = line.strip_suffix('\r').unwrap_or(line);
        push_line(&mut out, line, github);
    }
    Cow::Owned(out)
}

/// One line inside something else (a table cell, a workflow command's data): newlines are
/// shown visibly too.
pub fn inline(s: &str) -> Cow<'_, str> {
    inline_for(s, in_github())
}

pub fn inline_for(s: &str, github: bool) -> Cow<'_, str> {
    if !s.contains('\n') && !needs_text(s, github) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    push_visible(&mut out, s, github);
    Cow::Owned(out)
}

/// A JSON document for stdout: its text already has every control character escaped (serde),
/// but for C1 controls and bidi overrides, which serde leaves raw: those become JSON escapes
/// (`\u0085`), and under GitHub the runner's legacy `##[` is broken up as `#\u0023[`. The
/// values a program reads are unchanged.
pub fn json(s: &str) -> Cow<'_, str> {
    json_for(s, in_github())
}

pub fn json_for(s: &str, github: bool) -> Cow<'_, str> {
    let has_control = s.chars().any(|c| is_unsafe(c) && c != '\n');
    let has_legacy = github && s.contains("##[");
    if !has_control && !has_legacy {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c != '\n' && is_unsafe(c) {
            // A JSON escape: the same character to a program, a visible one to a person.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    if has_legacy {
        out = out.replace("##[", "#\\u0023[");
    }
    // A JSON line never begins with `::` (it begins with a bracket, a quote or whitespace and a
    // quote), so the rest of the GitHub rules hold already.
    Cow::Owned(out)
}

fn needs_text(s: &str, github: bool) -> bool {
    s.chars().any(|c| is_unsafe(c) && c != '\n')
        || (github && (s.contains("##[") || s.contains("::")))
}

/// Characters a terminal or a log viewer acts on instead of showing: C0 controls (but tab),
/// DEL, C1 controls, and the bidirectional overrides and isolates (they reorder what is shown);
/// and the style marker, which only [`push_visible`] may turn into a style.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || c == MARK
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escape(out: &mut String, c: char) {
    use std::fmt::Write as _;
    let n = c as u32;
    if n < 0x80 {
        let _ = write!(out, "\\x{n:02x}");
    } else {
        let _ = write!(out, "\\u{{{n:x}}}");
    }
}

fn push_line(out: &mut String, line: &str, github: bool) {
    let start = out.len();
    push_visible(out, line, github);
    if github {
        // The runner trims the line, then parses `::name …::data`: break the first colon.
        let body = &out[start..];
        let lead = body.len() - body.trim_start().len();
        if body[lead..].starts_with("::") {
            out.replace_range(start + lead..start + lead + 1, "\\x3a");
        }
    }
}

/// Pushes `s` with unsafe characters (newlines included) escaped, and under GitHub no `##[`.
fn push_visible(out: &mut String, s: &str, github: bool) {
    let start = out.len();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == MARK {
            if let Some((sgr, skip)) = style_escape(&s[i + c.len_utf8()..]) {
                out.push_str(sgr);
                for _ in 0..skip {
                    chars.next();
                }
                continue;
            }
        }
        if is_unsafe(c) {
            push_escape(out, c);
        } else {
            out.push(c);
        }
    }
    if github && out[start..].contains("##[") {
        let fixed = out[start..].replace("##[", "#\\x23[");
        out.truncate(start);
        out.push_str(&fixed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_escape_sequences_are_shown_visibly() {
        assert_eq!(
            text_for("a\x1b]0;pwned\x07b\x1b[2Jc\u{9b}d\u{202e}e\tf", false),
            "a\\x1b]0;pwned\\x07b\\x1b[2Jc\\u{9b}d\\u{202e}e\tf"
        );
        assert_eq!(
            text_for("one\r\ntwo\rthree\n", false),
            "one\ntwo\\x0dthree\n"
        );
        assert!(matches!(
            text_for("plain text: ok", false),
            Cow::Borrowed(_)
        ));
        assert_eq!(inline_for("a\nb", false), "a\\x0ab");
    }

    #[test]
    fn under_github_no_line_is_a_workflow_command() {
        let s = "::stop-commands::TOKEN\n  ::error::forged\n\t ::add-mask::x\nok: a::b\n##[error]x";
        let out = text_for(s, true);
        for line in out.lines() {
            assert!(!line.trim_start().starts_with("::"), "{line}");
            assert!(!line.contains("##["), "{line}");
        }
        assert_eq!(out.lines().nth(3), Some("ok: a::b"));
        assert_eq!(out.lines().next(), Some("\\x3a:stop-commands::TOKEN"));
        // Off GitHub the text is left as it is.
        assert_eq!(text_for(s, false), s);
    }

    #[test]
    fn every_pass_is_idempotent() {
        for s in [
            "::x\n##[y\x1b[0m",
            "###[[##[",
            " \u{2028}::z",
            "\u{85}::w",
            "a\r\n::b\r",
        ] {
            let once = text_for(s, true).into_owned();
            assert_eq!(text_for(&once, true), once, "{s:?}");
            for line in once.lines() {
                assert!(!line.trim_start().starts_with("::"), "{line:?}");
                assert!(!line.contains("##["), "{line:?}");
            }
        }
    }

    #[test]
    fn only_shipgates_own_styles_become_escape_sequences() {
        let own = styled(Style::Bold, "app");
        assert_eq!(text_for(&own, false), "\x1b[1mapp\x1b[0m");
        let forged = format!("{MARK}1x {MARK}0000000000000000001y");
        assert_eq!(
            text_for(&forged, true),
            "\\u{e000}1x \\u{e000}0000000000000000001y"
        );
        let red = styled(Style::Red, "::error::x");
        let out = text_for(&red, true);
        assert!(out.starts_with("\x1b[1;31m"), "{out:?}");
        assert!(!out.trim_start().starts_with("::"));
    }

    #[test]
    fn json_stays_json_with_the_same_values() {
        let v = serde_json::json!({"message": "##[error]x \u{1b}[2J \u{9b}2J \u{202e} ::stop-commands::t"});
        let s = serde_json::to_string_pretty(&v).unwrap();
        let out = json_for(&s, true);
        assert!(!out.contains("##["));
        assert!(!out.chars().any(|c| c != '\n' && is_unsafe(c)), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, v);
    }
}
