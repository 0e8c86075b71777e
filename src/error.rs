//! The one error type: what failed, why (a chain of causes), how to fix it, and the exit code.

use std::fmt;

use crate::exit_code;

/// An error that ends a command. Rendered as `error:` / `Caused by:` / `hint:`.
#[derive(Debug)]
pub struct Error {
    /// Exit code of SPEC §6.
    pub code: i32,
    /// What failed, as a lowercase fragment ("failed to …" reads before it).
    pub message: String,
    /// Causes, outermost first.
    pub causes: Vec<String>,
    /// How to fix it, when we know.
    pub hint: Option<String>,
    /// Extra lines shown verbatim after the message (a quoted config line, a stderr tail).
    pub detail: Option<String>,
    /// The command this error is about never started (its program could not be executed), so
    /// it changed nothing. A deploy treats such a region as unchanged.
    pub not_started: bool,
    /// The command ran, but its answer could not be read (empty, not the JSON expected): the
    /// platform said nothing usable, which is not the same as "nothing runs there".
    pub unreadable: bool,
    /// Each problem of a config error at its place in the file, for annotations (GitHub's
    /// `::error file=…,line=…,col=…`) and the JSON error document.
    pub locations: Box<Vec<Location>>,
}

/// One problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// The column after the last one of the span, on the same line.
    pub end_col: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            detail: None,
            not_started: false,
            unreadable: false,
            locations: Box::default(),
        }
    }
    /// A usage or configuration error (exit 2): nothing was changed.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit_code::USAGE, message)
    }
    /// A runtime failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(exit_code::FAILED, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// Marks the error as coming from a command that never started.
    pub fn not_started(mut self) -> Self {
        self.not_started = true;
        self
    }
    /// Marks the error as an answer that could not be read.
    pub fn unreadable(mut self) -> Self {
        self.unreadable = true;
        self
    }
    /// The message, its causes and its detail (a stderr tail) as plain text, for places that
    /// list several errors in one message.
    pub fn with_detail_text(&self) -> String {
        match &self.detail {
            Some(d) if !d.trim().is_empty() => format!("{self}\n{}", d.trim_end()),
            _ => self.to_string(),
        }
    }
    pub fn caused_by(mut self, cause: impl fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }
    /// This error as the cause of `message`, keeping its exit code, hint and detail.
    pub fn within(self, message: impl Into<String>) -> Self {
        let mut causes = vec![self.message];
        causes.extend(self.causes);
        Error {
            code: self.code,
            message: message.into(),
            causes,
            hint: self.hint,
            detail: self.detail,
            not_started: self.not_started,
            unreadable: self.unreadable,
            locations: self.locations,
        }
    }
    pub fn exit_code(&self) -> i32 {
        self.code
    }

    /// Renders the error for a person, optionally with colour (style markers: print it through
    /// [`crate::say_part!`], which also neutralises the text quoted from elsewhere, such as a
    /// platform's stderr tail).
    pub fn render(&self, color: bool) -> String {
        use crate::output::neutral::{styled, Style};
        let style = |style: Style, s: &str| {
            if color {
                styled(style, s)
            } else {
                s.to_string()
            }
        };
        let mut out = format!(
            "{}: {}\n",
            style(Style::Red, "error"),
            style(Style::Bold, &self.message)
        );
        if let Some(detail) = &self.detail {
            for line in detail.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if !self.causes.is_empty() {
            out.push_str("\nCaused by:\n");
            for (i, cause) in self.causes.iter().enumerate() {
                let mut lines = cause.lines();
                if let Some(first) = lines.next() {
                    out.push_str(&format!("  {i}: {first}\n"));
                }
                for line in lines {
                    out.push_str(&format!("     {line}\n"));
                }
            }
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n{}: {hint}\n", style(Style::Yellow, "hint")));
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(e.to_string())
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(err) => err,
            Err(e) => {
                let mut chain = e.chain();
                let mut err =
                    Error::failed(chain.next().map(|c| c.to_string()).unwrap_or_default());
                for cause in chain {
                    err.causes.push(cause.to_string());
                }
                err
            }
        }
    }
}

/// Adds a cause-chained context to results, like anyhow's `Context`, keeping the exit code.
pub trait Context<T> {
    fn context(self, message: impl Into<String>) -> Result<T>;
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::failed(message).caused_by(e))
    }
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::failed(f()).caused_by(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_keeps_code_hint_detail_and_the_whole_chain() {
        let inner = Error::new(exit_code::LOCKED, "refused")
            .caused_by("lock file exists")
            .with_hint("remove it")
            .with_detail("  quoted");
        let outer = inner.within("cannot record");
        assert_eq!(outer.exit_code(), exit_code::LOCKED);
        assert_eq!(outer.causes, ["refused", "lock file exists"]);
        assert_eq!(
            outer.render(false),
            "error: cannot record\n    quoted\n\nCaused by:\n  0: refused\n  1: lock file exists\n\
             \nhint: remove it\n"
        );
    }
}
