//! Reports: human progress (indicatif or plain lines), JSON results, GitHub Actions.
