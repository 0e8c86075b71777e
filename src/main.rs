use clap::Parser;

/// Whether the raw command line asks for `--format json` (`Some(false)`) or `jsonl`
/// (`Some(true)`), for errors found before the arguments are parsed.
fn json_requested() -> Option<bool> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().enumerate().find_map(|(i, a)| {
        let value = match a.strip_prefix("--format=") {
            Some(v) => v,
            None if a == "--format" => args.get(i + 1)?.as_str(),
            None => return None,
        };
        match value {
            "json" => Some(false),
            "jsonl" => Some(true),
            _ => None,
        }
    })
}

fn main() {
    let cli = match shipgate::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--format json` promises one JSON document on stdout, also for a command line
            // clap refuses (help and --version are not errors and print as usual).
            if e.use_stderr() {
                // The flag values clap quotes came from elsewhere: neutralised, like all text.
                shipgate::say_part!("{}", shipgate::redact::redact(&e.to_string()));
                if let Some(jsonl) = json_requested() {
                    let message = e.to_string();
                    let message = message
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("error: ")
                        .to_string();
                    let doc = serde_json::json!({
                        "ok": false,
                        "status": "error",
                        "exit_code": shipgate::exit_code::USAGE,
                        "error": {"message": message, "causes": [], "hint": "see --help"},
                    });
                    if jsonl {
                        shipgate::out!("{doc}");
                    } else {
                        shipgate::out!(
                            "{}",
                            serde_json::to_string_pretty(&doc).unwrap_or_default()
                        );
                    }
                }
                std::process::exit(shipgate::exit_code::USAGE);
            }
            e.exit()
        }
    };
    let output = shipgate::output::Output::from_args(&cli.global);
    let code = match shipgate::commands::run(cli, &output) {
        Ok(code) => code,
        Err(err) => {
            let text = shipgate::redact::redact(&err.render(output.color));
            shipgate::say_part!("{text}");
            output.json_error(&err);
            if output.github {
                shipgate::report::github::error_annotations(&err);
                // Later workflow steps read the outcome even when shipgate stopped early.
                let _ = shipgate::report::github::write_outputs(&[
                    ("status", "error".to_string()),
                    ("exit_code", err.exit_code().to_string()),
                ]);
            }
            err.exit_code()
        }
    };
    // Nothing a command started may outlive shipgate: what is left of the groups of commands
    // that exited (TERMed already, still in their grace) gets the KILL now.
    shipgate::exec::kill_lingering();
    std::process::exit(code);
}
