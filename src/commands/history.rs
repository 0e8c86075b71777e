//! `shipgate history` and `shipgate history verify`.
//!
//! Output is newest first. `--last N` reads the file backwards from its end
//! ([`jsonl::RevLines`]), so it reads only the tail. Every other query (everything, or back to
//! `--since`) reads the file in 1 MiB chunks on every core ([`jsonl::par_rev_chunks`]) and
//! shows the chunks' results in order, newest first, holding a few chunks at a time. A line is
//! parsed only when it contains every filter value as a quoted string (a `memmem` test), and
//! then only partly ([`Facts`]); records are printed as the bytes stored. `--stats` and
//! `--kind deploy` remember a deploy only from its newest record to its `started` one, so
//! memory does not grow with history.

use std::io::Write;

use crate::cli::{Format, GlobalArgs, HistoryAction, HistoryArgs};
use crate::config::{Config, StoreKind};
use crate::error::Error;
use crate::exit_code;
use crate::ledger::query::{self, Facts, Filter, Prefilter};
use crate::ledger::stats::{Stats, StatsBuilder};
use crate::ledger::{jsonl, FileKind, Ledger, AUDIT_FILE, HISTORY_FILE};
use crate::output::Output;

/// At most this many skipped-line warnings are printed one by one.
const MAX_WARNINGS: usize = 20;

pub fn run(global: &GlobalArgs, args: &HistoryArgs, output: &Output) -> Result<i32, Error> {
    let verifying = matches!(args.action, Some(HistoryAction::Verify));
    let (_, ledger) = open_ledger(global, output, verifying)?;
    match args.action {
        Some(HistoryAction::Verify) => verify(&ledger, output),
        None => query(&ledger, args, output),
    }
}

/// The config, when there is one, and the ledger. Reading history needs no pipeline file: with
/// `--state-dir` and no file, the directory alone is enough.
///
/// Readers never create the file store's directory. A missing one is a warning (nothing was
/// recorded there: a typo in `--state-dir`, or no deploy yet), or an error when `required`
/// (`history verify` must not report an intact chain of a ledger that is not there).
pub(super) fn open_ledger(
    global: &GlobalArgs,
    output: &Output,
    required: bool,
) -> Result<(Option<Config>, Ledger), Error> {
    let (config, dir) = match super::load_config(global) {
        Ok(config) if config.state.store == StoreKind::Git => {
            let ledger = Ledger::open_for(&config)?;
            return Ok((Some(config), ledger));
        }
        Ok(config) => {
            let dir = config.state.dir.clone();
            (Some(config), dir)
        }
        Err(e) => match &global.state_dir {
            Some(dir) if !global.config.exists() => (None, dir.clone()),
            _ => return Err(e),
        },
    };
    if dir.is_dir() {
        return Ok((config, Ledger::reader(&dir)));
    }
    let what = format!("state directory `{}` does not exist", dir.display());
    if required {
        return Err(Error::failed(format!("nothing to verify: {what}")).with_hint(
            "check --state-dir (SHIPGATE_STATE_DIR) or [state].dir; it is created by the first \
             deploy or published event",
        ));
    }
    output.warn(format!(
        "{what}: nothing has been recorded there (check --state-dir or [state].dir)"
    ));
    Ok((config, Ledger::reader(&dir)))
}

fn verify(ledger: &Ledger, output: &Output) -> Result<i32, Error> {
    let (history, audit) = ledger.verify()?;
    let files = [(HISTORY_FILE, &history), (AUDIT_FILE, &audit)];
    let ok = files.iter().all(|(_, v)| v.problems.is_empty());
    if output.format != Format::Human {
        output.json(&serde_json::json!({
            "ok": ok,
            "files": {HISTORY_FILE: history, AUDIT_FILE: audit},
        }));
    }
    for (name, v) in files {
        for aside in &v.repairs {
            output.info(format!(
                "{name}: a torn final line (a crash mid-append) was repaired earlier: its bytes \
                 were moved to {aside}"
            ));
        }
    }
    if ok {
        for (name, v) in files {
            output.info(format!("{name}: {} records, hash chain intact", v.lines));
        }
        return Ok(exit_code::SUCCESS);
    }
    let mut detail = Vec::new();
    let mut count = 0;
    for (name, v) in files {
        count += v.problems.len();
        for p in v.problems.iter().take(MAX_WARNINGS) {
            detail.push(format!("{name} line {}: {}", p.line, p.message));
        }
        if v.problems.len() > MAX_WARNINGS {
            detail.push(format!(
                "{name}: … and {} more",
                v.problems.len() - MAX_WARNINGS
            ));
        }
    }
    Err(Error::failed(format!(
        "the ledger does not verify: {count} problem{}",
        if count == 1 { "" } else { "s" }
    ))
    .with_detail(detail.join("\n"))
    .with_hint("the first problem is where the record was changed, cut or torn; restore that line from a backup, or keep the file as evidence"))
}

fn reject_for_audit(args: &HistoryArgs) -> Result<(), Error> {
    let given = [
        ("--kind", args.kind.is_some()),
        ("--stage", args.stage.is_some()),
        ("--region", args.region.is_some()),
        ("--status", args.status.is_some()),
        ("--version", args.version.is_some()),
        ("--stats", args.stats),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, on)| *on) {
        return Err(Error::usage(format!("{flag} does not apply to --audit"))
            .with_hint("the audit trail takes --last and --since"));
    }
    Ok(())
}

fn filter(args: &HistoryArgs) -> Result<Filter, Error> {
    if let Some(k) = &args.kind {
        if !query::KINDS.contains(&k.as_str()) {
            let mut err = Error::usage(format!("unknown --kind `{k}`"));
            err = match crate::config::did_you_mean(k, query::KINDS.iter().copied()) {
                Some(c) => err.with_hint(format!("did you mean `{c}`?")),
                None => err.with_hint(format!("kinds: {}", query::KINDS.join(", "))),
            };
            return Err(err);
        }
    }
    Ok(Filter {
        since: args
            .since
            .as_deref()
            .map(|s| query::parse_since(s, chrono::Utc::now()))
            .transpose()?,
        kind: args.kind.clone(),
        stage: args.stage.clone(),
        region: args.region.clone(),
        status: args.status.clone(),
        version: args.version.clone(),
    })
}

/// How matching records are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Jsonl,
    Json,
    Table { audit: bool },
    Stats,
}

/// What the scan makes of one line.
enum Hit<'a> {
    Skip,
    /// Older than `--since`: so is everything further back.
    Stop,
    Warn(String),
    /// A deploy's `started` record that did not match: nothing older belongs to that deploy
    /// (the statistics and `--kind deploy` let go of it).
    Close(String),
    Match(Box<Facts<'a>>),
}

/// What every reader of a scan shares.
struct Scan<'a> {
    filter: &'a Filter,
    prefilter: &'a Prefilter,
    file: &'a str,
    mode: Mode,
    /// `--kind deploy` as a table: one line per deploy, its newest record.
    one_per_deploy: bool,
    redactor: &'a crate::redact::Redactor,
}

impl Scan<'_> {
    fn wants_closes(&self) -> bool {
        self.mode == Mode::Stats || self.one_per_deploy
    }

    fn hit<'l>(&self, offset: u64, line: &'l [u8], complete: bool) -> Hit<'l> {
        if !complete {
            return Hit::Warn(crate::ledger::torn_warning(self.file));
        }
        if let Some(since) = self.filter.since {
            // Records are in append order: everything further back is older still. The time
            // is read from the raw line, so lines the pre-filter skips count too.
            if query::raw_time(line).is_some_and(|t| t < since) {
                return Hit::Stop;
            }
        }
        let unmatched = || match self.wants_closes() {
            true => crate::ledger::stats::started_deploy_id(line).map_or(Hit::Skip, Hit::Close),
            false => Hit::Skip,
        };
        if !self.prefilter.may_match(line) {
            return unmatched();
        }
        let facts: Facts = match serde_json::from_slice(line) {
            Ok(f) => f,
            Err(e) => {
                return Hit::Warn(format!(
                    "{}: skipped an unreadable line at byte {offset}: {e}",
                    self.file
                ))
            }
        };
        if !self.filter.matches(&facts) {
            return unmatched();
        }
        Hit::Match(Box::new(facts))
    }

    /// Appends how a matched record is shown: a JSON array item starts with `,\n`.
    fn render(&self, out: &mut Vec<u8>, line: &[u8], facts: &Facts<'_>) -> std::io::Result<()> {
        match self.mode {
            Mode::Jsonl | Mode::Json => {
                if self.mode == Mode::Json {
                    out.extend_from_slice(b",\n");
                }
                let text = String::from_utf8_lossy(line);
                let secret_inside = self
                    .redactor
                    .secrets()
                    .iter()
                    .any(|secret| text.contains(secret.as_str()));
                if secret_inside {
                    // Values only, never structure (a secret may equal a key or an enum).
                    let mut v: serde_json::Value =
                        serde_json::from_str(&text).map_err(std::io::Error::other)?;
                    self.redactor.redact_json(&mut v);
                    let text = serde_json::to_string(&v).map_err(std::io::Error::other)?;
                    out.extend_from_slice(crate::output::neutral::json(&text).as_bytes());
                } else {
                    out.extend_from_slice(crate::output::neutral::json(&text).as_bytes());
                }
                if self.mode == Mode::Jsonl {
                    out.push(b'\n');
                }
            }
            Mode::Table { audit } => {
                let row = if audit {
                    audit_row(facts)
                } else {
                    history_row(facts)
                };
                let row = self.redactor.redact(&row);
                out.extend_from_slice(crate::output::neutral::text(&row).as_bytes());
                out.push(b'\n');
            }
            Mode::Stats => {}
        }
        Ok(())
    }
}

/// A matched record of one chunk, for `--kind deploy`'s one line per deploy.
struct Mark {
    deploy: Option<String>,
    started: bool,
    /// Where its row is in the chunk's output; `None`: a [`Hit::Close`].
    row: Option<std::ops::Range<usize>>,
}

/// What a worker made of one chunk of the file (its lines newest first).
#[derive(Default)]
struct Part {
    out: Vec<u8>,
    marks: Vec<Mark>,
    stats: crate::ledger::stats::StatsChunk,
    warnings: Vec<String>,
    matched: usize,
    /// The chunk reached a record older than `--since`.
    stop: bool,
    error: Option<std::io::Error>,
}

/// The deploys `--kind deploy` has shown a line for and whose `started` record (their first)
/// is not reached yet: only those still open in the scan.
#[derive(Default)]
struct Shown(std::collections::HashSet<String>);

impl Shown {
    /// Whether to show a deploy's record (not when a newer one of the deploy was shown).
    fn show(&mut self, deploy: Option<&str>, started: bool) -> bool {
        let Some(id) = deploy else {
            return true;
        };
        if self.0.contains(id) {
            if started {
                self.0.remove(id);
            }
            return false;
        }
        if !started {
            self.0.insert(id.to_string());
        }
        true
    }
    fn close(&mut self, deploy: &str) {
        self.0.remove(deploy);
    }
}

fn query(ledger: &Ledger, args: &HistoryArgs, output: &Output) -> Result<i32, Error> {
    if args.audit {
        reject_for_audit(args)?;
    }
    let filter = filter(args)?;
    let (kind, file) = if args.audit {
        (FileKind::Audit, AUDIT_FILE)
    } else {
        (FileKind::History, HISTORY_FILE)
    };
    let prefilter = Prefilter::new(filter.needles());
    let redactor = crate::redact::global();
    let mode = if args.stats {
        Mode::Stats
    } else {
        match output.format {
            Format::Jsonl => Mode::Jsonl,
            Format::Json => Mode::Json,
            Format::Human => Mode::Table { audit: args.audit },
        }
    };
    let scan = Scan {
        filter: &filter,
        prefilter: &prefilter,
        file,
        mode,
        one_per_deploy: args.kind.as_deref() == Some("deploy")
            && !args.audit
            && matches!(mode, Mode::Table { .. }),
        redactor: &redactor,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(jsonl::BLOCK, stdout.lock());
    let mut warnings = Vec::new();
    let mut matched = 0usize;
    let mut stats = StatsBuilder::default();
    let mut json_first = true;
    let result = (|| -> std::io::Result<()> {
        if mode == Mode::Json {
            crate::output::mark_json_printed();
            out.write_all(b"[")?;
        }
        if let Mode::Table { audit } = mode {
            let header = output.bold(&header(audit));
            writeln!(out, "{}", crate::output::neutral::text(&header))?;
        }
        let path = ledger.path(kind);
        let Some(f) = crate::ledger::file::open_read(&path).map_err(std::io::Error::other)? else {
            return Ok(());
        };
        let mut shown = Shown::default();
        let mut write = |out: &mut std::io::BufWriter<_>, bytes: &[u8]| -> std::io::Result<()> {
            let bytes = match (mode, json_first, bytes.first()) {
                (Mode::Json, true, Some(b',')) => {
                    json_first = false;
                    &bytes[1..]
                }
                _ => bytes,
            };
            out.write_all(bytes)
        };
        if let Some(last) = args.last {
            // `--last N`: the newest lines only, read backwards from the end.
            let mut lines = jsonl::RevLines::new(f)?;
            let torn = lines.torn_tail;
            let mut first = true;
            let mut buf = Vec::new();
            while matched < last {
                let Some((offset, line)) = lines.next_line()? else {
                    break;
                };
                let complete = !(std::mem::take(&mut first) && torn);
                match scan.hit(offset, line, complete) {
                    Hit::Skip => {}
                    Hit::Stop => break,
                    Hit::Warn(w) => warnings.push(w),
                    Hit::Close(id) => {
                        stats.close(&id);
                        shown.close(&id);
                    }
                    Hit::Match(facts) => {
                        let started = facts.status.as_deref() == Some("started");
                        if scan.one_per_deploy && !shown.show(facts.deploy_id.as_deref(), started) {
                            continue;
                        }
                        matched += 1;
                        if mode == Mode::Stats {
                            stats.add(&facts);
                        } else {
                            buf.clear();
                            scan.render(&mut buf, line, &facts)?;
                            write(&mut out, &buf)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        // Every line (back to `--since`): chunks are read and matched on every core, and shown
        // in order, newest first.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut failed = None;
        let spare = std::sync::Mutex::new(Vec::<Vec<u8>>::new());
        let work = |offset: u64, bytes: &[u8]| {
            let mut part = Part {
                // A buffer the consumer is done with: the output of a whole scan passes through
                // the same few buffers.
                out: spare
                    .lock()
                    .map(|mut s| s.pop())
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                ..Part::default()
            };
            jsonl::for_each_line_rev(offset, bytes, |offset, line, complete| {
                if part.stop || part.error.is_some() {
                    return;
                }
                match scan.hit(offset, line, complete) {
                    Hit::Skip => {}
                    Hit::Stop => part.stop = true,
                    Hit::Warn(w) => part.warnings.push(w),
                    Hit::Close(id) => {
                        if mode == Mode::Stats {
                            part.stats.close(&id);
                        } else {
                            part.marks.push(Mark {
                                deploy: Some(id),
                                started: true,
                                row: None,
                            });
                        }
                    }
                    Hit::Match(facts) => {
                        part.matched += 1;
                        if mode == Mode::Stats {
                            part.stats.add(&facts);
                            return;
                        }
                        let start = part.out.len();
                        if let Err(e) = scan.render(&mut part.out, line, &facts) {
                            part.error = Some(e);
                        }
                        if scan.one_per_deploy {
                            part.marks.push(Mark {
                                deploy: facts.deploy_id.as_deref().map(str::to_string),
                                started: facts.status.as_deref() == Some("started"),
                                row: Some(start..part.out.len()),
                            });
                        }
                    }
                }
            });
            part
        };
        let consume = |part: Part| -> bool {
            let done = (|| -> std::io::Result<bool> {
                if let Some(e) = part.error {
                    return Err(e);
                }
                warnings.extend(part.warnings);
                if mode == Mode::Stats {
                    stats.add_chunk(part.stats);
                    matched += part.matched;
                } else if scan.one_per_deploy {
                    for m in &part.marks {
                        match &m.row {
                            None => shown.close(m.deploy.as_deref().unwrap_or("")),
                            Some(row) => {
                                if shown.show(m.deploy.as_deref(), m.started) {
                                    matched += 1;
                                    write(&mut out, &part.out[row.clone()])?;
                                }
                            }
                        }
                    }
                } else {
                    matched += part.matched;
                    write(&mut out, &part.out)?;
                }
                let mut buf = part.out;
                buf.clear();
                if let Ok(mut s) = spare.lock() {
                    s.push(buf);
                }
                Ok(!part.stop)
            })();
            match done {
                Ok(more) => more,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        };
        jsonl::par_rev_chunks(&f, threads, work, consume)?;
        failed.map_or(Ok(()), Err)
    })();
    let finish = (|| -> std::io::Result<()> {
        result?;
        match mode {
            Mode::Json => out.write_all(if json_first { b"]\n" } else { b"\n]\n" })?,
            Mode::Table { .. } if matched == 0 => writeln!(out, "(no records)")?,
            Mode::Stats => {
                let stats = std::mem::take(&mut stats).finish(filter.since, chrono::Utc::now());
                if output.format == Format::Human {
                    write!(
                        out,
                        "{}",
                        crate::output::neutral::text(&render_stats(&stats))
                    )?;
                } else {
                    let mut v = serde_json::to_value(&stats).map_err(std::io::Error::other)?;
                    redactor.redact_json(&mut v);
                    let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
                    out.write_all(crate::output::neutral::json(&text).as_bytes())?;
                    out.write_all(b"\n")?;
                }
            }
            _ => {}
        }
        out.flush()
    })();
    match finish {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(exit_code::SUCCESS),
        Err(e) => return Err(Error::failed(format!("cannot read `{file}`")).caused_by(e)),
        Ok(()) => {}
    }
    // `--status` is free text (events carry any status), so an unknown value is not an error;
    // but a typo that matches nothing deserves a word.
    if matched == 0 {
        if let Some(s) = filter
            .status
            .as_deref()
            .filter(|s| !query::OUTCOMES.contains(s))
        {
            let known = match crate::config::did_you_mean(s, query::OUTCOMES.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("shipgate writes {}", query::OUTCOMES.join(", ")),
            };
            output.warn(format!("no record has the status `{s}`; {known}"));
        }
    }
    for w in warnings.iter().take(MAX_WARNINGS) {
        output.warn(w);
    }
    if warnings.len() > MAX_WARNINGS {
        output.warn(format!(
            "… and {} more unreadable lines; run `shipgate history verify`",
            warnings.len() - MAX_WARNINGS
        ));
    }
    Ok(exit_code::SUCCESS)
}

/// Cuts `s` to `width` characters, marking a cut with `…`, and pads it.
pub(super) fn cell(s: &str, width: usize) -> String {
    if s.chars().count() > width {
        let cut: String = s.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        format!("{s:<width$}")
    }
}

/// Column widths of the history table (80 columns before REASON, which takes the rest of the
/// terminal).
const COLS: [(&str, usize); 9] = [
    ("TIME", 16),
    ("KIND", 8),
    ("STAGE", 7),
    ("VERSION", 8),
    ("REGIONS", 9),
    ("STATUS", 11),
    ("DUR", 5),
    ("ACTOR", 9),
    ("REASON", 0),
];

const AUDIT_COLS: [(&str, usize); 4] = [("TIME", 16), ("PRI", 3), ("DELIVERED", 12), ("TITLE", 0)];

/// How wide the table may be: the terminal's width when stdout is one (cells are cut to fit,
/// the last column takes what is left), else unbounded (piped: nothing is ever cut).
/// Asked once per run: every row of a long table uses it.
fn table_width() -> Option<usize> {
    static WIDTH: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(|| {
        use std::io::IsTerminal;
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let width = terminal_size::terminal_size()
            .map(|(w, _)| usize::from(w.0))
            .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
            .unwrap_or(80);
        Some(width.max(80))
    })
}

fn header(audit: bool) -> String {
    header_in(audit, table_width())
}

fn header_in(audit: bool, width: Option<usize>) -> String {
    let cols: &[(&str, usize)] = if audit { &AUDIT_COLS } else { &COLS };
    row_in(cols, cols.iter().map(|c| c.0.to_string()).collect(), width)
}

fn row(cols: &[(&str, usize)], cells: Vec<String>) -> String {
    row_in(cols, cells, table_width())
}

/// One table line within `width` columns (`None`: unbounded, nothing cut).
fn row_in(cols: &[(&str, usize)], cells: Vec<String>, width: Option<usize>) -> String {
    let last = cols.len() - 1;
    let fixed: usize = cols[..last].iter().map(|(_, w)| w + 1).sum();
    cells
        .iter()
        .zip(cols)
        .enumerate()
        .map(|(i, (c, (_, w)))| match (i == last, width) {
            // On a terminal every cell fits its column, the last one the rest of the line.
            // The last column takes the rest of the line, or is left out when that is too
            // narrow to read (an 80-column terminal keeps the table to 80).
            (true, Some(total)) if total >= fixed + 10 => {
                cell(c, total - fixed).trim_end().to_string()
            }
            (true, Some(_)) => String::new(),
            (false, Some(_)) => cell(c, *w),
            // Piped: padded to line up, never cut.
            (true, None) => c.clone(),
            (false, None) => format!("{c:<w$}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end()
        .to_string()
}

fn time(f: &Facts<'_>) -> String {
    f.time()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| f.ts.to_string())
}

/// `42s`, `4m05`, `1h02`: five characters at most.
pub fn short_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}", s / 60, s % 60)
    } else {
        format!("{}h{:02}", s / 3600, (s % 3600) / 60)
    }
}

fn history_row(f: &Facts<'_>) -> String {
    row(&COLS, history_cells(f))
}

fn history_cells(f: &Facts<'_>) -> Vec<String> {
    let stage = f
        .stage
        .as_deref()
        .map(str::to_string)
        .unwrap_or_else(|| f.stages.join(","));
    let version = f.versions().join(",");
    let regions = if let Some(r) = &f.region {
        r.to_string()
    } else if !f.regions.is_empty() {
        f.regions.join(",")
    } else if !f.regions_detail.is_empty() {
        f.regions_detail.join(",")
    } else {
        f.previous_versions.join(",")
    };
    let status = match (&f.gate, f.kind.as_ref()) {
        // The result first, so a narrow column cuts the gate's name, never pass/fail/tripped.
        (Some(g), "gate") => format!("{} {g}", f.result.as_deref().unwrap_or("")),
        _ => f.outcome().unwrap_or("").to_string(),
    };
    let kind = match (f.kind.as_ref(), &f.event) {
        ("event", Some(e)) => e.platform.clone().unwrap_or_else(|| "event".into()),
        (k, _) => k.to_string(),
    };
    vec![
        time(f),
        kind,
        stage,
        version,
        regions,
        status,
        f.duration_seconds.map(short_duration).unwrap_or_default(),
        f.actor.as_deref().unwrap_or("").to_string(),
        f.reason
            .as_deref()
            .or(f.detail.as_deref())
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    ]
}

fn audit_row(f: &Facts<'_>) -> String {
    let names = |v: &Option<serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| {
                    i.as_str().map(str::to_string).or_else(|| {
                        i.get("sink")
                            .and_then(|s| s.as_str())
                            .map(|s| format!("!{s}"))
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut delivered = names(&f.delivered);
    delivered.extend(names(&f.failed));
    row(
        &AUDIT_COLS,
        vec![
            time(f),
            f.priority.as_deref().unwrap_or("").to_string(),
            if delivered.is_empty() {
                "-".into()
            } else {
                delivered.join(",")
            },
            f.title.as_deref().unwrap_or("").to_string(),
        ],
    )
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn render_stats(s: &Stats) -> String {
    let mut out = String::new();
    let day = |t: &Option<String>| t.as_deref().map(|t| t.chars().take(10).collect::<String>());
    match (day(&s.first), day(&s.last)) {
        (Some(a), Some(b)) => out.push_str(&format!("window       {a} .. {b}")),
        _ => out.push_str("window       (no records)"),
    }
    if let (Some(d), Some(r)) = (s.window_days, s.deploys_per_day) {
        out.push_str(&format!(" ({d:.1} days, {r:.2} deploys/day)"));
    }
    out.push('\n');
    out.push_str(&format!(
        "deploys      {} ({} finished)\nsuccess rate {}\nrollback rate {}\n",
        s.deploys,
        s.finished,
        pct(s.success_rate),
        pct(s.rollback_rate)
    ));
    if !s.by_status.is_empty() {
        let by: Vec<String> = s
            .by_status
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!("outcomes     {}\n", by.join(", ")));
    }
    if s.manual_rollbacks > 0 {
        out.push_str(&format!("manual rollbacks {}\n", s.manual_rollbacks));
    }
    if s.deploy_duration.is_some() || !s.stage_durations.is_empty() {
        out.push_str("\nduration     mean      p95   count\n");
        let mut line = |name: &str, d: &crate::ledger::stats::Durations| {
            out.push_str(&format!(
                "  {:<10} {:>6} {:>8} {:>7}\n",
                cell(name, 10).trim_end(),
                short_duration(d.mean_seconds),
                short_duration(d.p95_seconds),
                d.count
            ));
        };
        if let Some(d) = &s.deploy_duration {
            line("(deploy)", d);
        }
        for (stage, d) in &s.stage_durations {
            line(stage, d);
        }
        let approximate = s
            .deploy_duration
            .iter()
            .chain(s.stage_durations.values())
            .map(|d| d.p95_relative_error)
            .fold(0.0, f64::max);
        if approximate > 0.0 {
            out.push_str(&format!(
                "  (p95 within {}% where more than {} durations: a log-bucketed histogram)\n",
                approximate * 100.0,
                crate::ledger::stats::EXACT
            ));
        }
    }
    if !s.gates.is_empty() {
        out.push_str("\ngate pass rate (recorded results)\n");
        for (region, gates) in &s.gates {
            for (gate, c) in gates {
                out.push_str(&format!(
                    "  {:<8} {:<12} {:>6}  ({} pass, {} fail, {} tripped)\n",
                    cell(region, 8).trim_end(),
                    cell(gate, 12).trim_end(),
                    pct(c.pass_rate),
                    c.pass,
                    c.fail,
                    c.tripped
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_fit_80_columns() {
        let f: Facts = serde_json::from_str(
            r#"{"ts":"2026-01-31T12:04:05Z","kind":"stage","stage":"canary-long-name",
                "version":"abcdef1234567","regions":["lhr","nrt","ewr","ord"],
                "status":"rolled_back","duration_seconds":3725,"actor":"someone-with-a-long-name"}"#,
        )
        .unwrap();
        let r = row_in(&COLS, history_cells(&f), Some(80));
        assert!(r.chars().count() <= 80, "{r}");
        assert!(
            r.starts_with(
                "2026-01-31 12:04 stage    canary… abcdef1… lhr,nrt,… rolled_back 1h02  someone-…"
            ),
            "{r}"
        );
        assert!(header_in(false, Some(80)).chars().count() <= 80);
        let wide = row_in(&COLS, history_cells(&f), Some(120));
        assert!(wide.chars().count() <= 120, "{wide}");
        assert!(header_in(true, Some(80)).chars().count() <= 80);
        // Piped: nothing is cut.
        let piped = row_in(&COLS, history_cells(&f), None);
        assert!(piped.contains("canary-long-name") && piped.contains("someone-with-a-long-name"));
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(42.4), "42s");
        assert_eq!(short_duration(245.0), "4m05");
        assert_eq!(short_duration(3725.0), "1h02");
    }
}
