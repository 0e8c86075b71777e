//! Signals during a deploy or rollback (SPEC §3).
//!
//! The first SIGINT, SIGTERM or SIGHUP (a dropped SSH session or closed terminal) stops new
//! work: the `work` token is cancelled, which terminates in-flight commands (TERM to their
//! process group, 5 s grace, KILL), and the `on_first` hook writes the `cancelling` record at
//! once, naming the regions changed and their targets. The engine then rolls back the regions it
//! changed, with commands bound to the `rollback` token.
//!
//! A second signal abandons the rollback: the `on_second` hook writes the `cancelled` record at
//! once (before any kill grace), listing each region as back, mixed or unknown with its target;
//! every command is hurried (TERM, 300 ms, KILL), the engine returns, releases the lock and
//! exits 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP). A watchdog makes sure of "within a
//! second": if the process is still there after [`ABANDON_DEADLINE`], it KILLs every child
//! group and exits with that code itself.
//!
//! GitHub Actions sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that, only
//! to the step's entry process: workflows should `exec shipgate deploy` so that process is
//! shipgate, and run `shipgate recover --latest --yes` in an `if: cancelled()` step, which gets
//! minutes to finish the job.
//!
//! Decisions read the signal state once ([`Signals::state`]): a signal arriving between two
//! reads can never make them disagree.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::exec::Cancel;
use crate::exit_code;

type Hook = Box<dyn FnOnce(i32) + Send>;

/// After a second signal, the process exits by this time whatever it is doing.
pub const ABANDON_DEADLINE: std::time::Duration = std::time::Duration::from_millis(900);

/// The signal state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelState {
    /// No signal.
    Running,
    /// One signal: stop new work, roll back.
    Cancelling { signal: i32 },
    /// Two or more: the rollback is abandoned.
    Abandoned { signal: i32 },
}

impl CancelState {
    pub fn cancelled(self) -> bool {
        self != CancelState::Running
    }
    pub fn abandoned(self) -> bool {
        matches!(self, CancelState::Abandoned { .. })
    }
    /// 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP (the first signal's).
    /// The signal's name (`SIGINT`), for messages; `no signal` when running.
    pub fn signal_name(self) -> &'static str {
        match self {
            CancelState::Running => "no signal",
            CancelState::Cancelling { signal } | CancelState::Abandoned { signal } => name(signal),
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            CancelState::Running => exit_code::SUCCESS,
            CancelState::Cancelling { signal } | CancelState::Abandoned { signal } => {
                code_of(signal)
            }
        }
    }
}

fn code_of(signal: i32) -> i32 {
    match signal {
        SIGINT => exit_code::INTERRUPTED_SIGINT,
        SIGHUP => exit_code::INTERRUPTED_SIGHUP,
        _ => exit_code::INTERRUPTED_SIGTERM,
    }
}

pub struct Signals {
    count: AtomicUsize,
    /// The run is over (outcome decided and printed): a signal now only cuts short the wait
    /// for deliveries.
    over: std::sync::atomic::AtomicBool,
    /// How many signals had arrived when the run was marked over (those the run acted on).
    before_over: AtomicUsize,
    first: AtomicI32,
    /// Cancelled by the first signal.
    pub work: Cancel,
    /// Cancelled by the second signal.
    pub rollback: Cancel,
    on_first: Mutex<Option<Hook>>,
    on_second: Mutex<Option<Hook>>,
}

impl Signals {
    /// Signal state with no handler installed (tests, commands that don't change anything).
    pub fn inert() -> Arc<Signals> {
        Arc::new(Signals {
            count: AtomicUsize::new(0),
            over: std::sync::atomic::AtomicBool::new(false),
            before_over: AtomicUsize::new(0),
            first: AtomicI32::new(0),
            work: Cancel::new(),
            rollback: Cancel::new(),
            on_first: Mutex::new(None),
            on_second: Mutex::new(None),
        })
    }

    /// Installs handlers for SIGINT, SIGTERM and SIGHUP; they stay for the life of the process.
    /// (Without the SIGHUP handler a closed terminal would kill shipgate outright, while the
    /// platform commands in their own process groups carry on.)
    pub fn install() -> Arc<Signals> {
        let state = Self::inert();
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(mut signals) => {
                let s = state.clone();
                std::thread::Builder::new()
                    .name("signals".into())
                    .spawn(move || {
                        for sig in signals.forever() {
                            s.receive(sig);
                        }
                    })
                    .ok();
            }
            Err(e) => crate::say!("warning: cannot install signal handlers: {e}"),
        }
        state
    }

    /// What a received signal does.
    pub fn receive(&self, sig: i32) {
        // Which signal came first is stored before the count says "cancelled", so no reader
        // sees a cancellation without its signal.
        let _ = self
            .first
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if self.over.load(Ordering::SeqCst) {
            crate::say!(
                "\nshipgate: {} received: the run is over; recording the deliveries still running as not delivered",
                name(sig)
            );
            return;
        }
        if n == 1 {
            self.work.cancel();
            let name = name(sig);
            crate::say!("\nshipgate: {name} received: stopping new work and rolling back what this run changed (send it again to abandon the rollback)");
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
                crate::say!("shipgate: the runner may kill this step before the rollback ends: a later step `if: cancelled()` running `shipgate recover --latest --yes` finishes the job");
            }
            if let Some(hook) = self
                .on_first
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                hook(sig);
            }
        } else if n == 2 {
            crate::exec::hurry_all();
            self.rollback.cancel();
            crate::say!("\nshipgate: second signal: abandoning the rollback");
            let first = self.first.load(Ordering::SeqCst);
            if let Some(hook) = take(&self.on_second) {
                hook(first);
            }
            let code = code_of(first);
            std::thread::spawn(move || {
                std::thread::sleep(ABANDON_DEADLINE);
                crate::say!("shipgate: still running {ABANDON_DEADLINE:?} after the second signal: stopping every command and exiting");
                crate::exec::kill_all();
                std::process::exit(code);
            });
        }
    }

    /// Runs `hook` on the second signal (the `cancelled` record). Set before the rollback
    /// starts; a hook set after the second signal arrived runs at once.
    pub fn on_second(&self, hook: impl FnOnce(i32) + Send + 'static) {
        *self.on_second.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
        if self.state().abandoned() {
            if let Some(h) = take(&self.on_second) {
                h(self.first.load(Ordering::SeqCst));
            }
        }
    }

    /// The signal state now: read once per decision.
    pub fn state(&self) -> CancelState {
        // `first` is stored before `count` moves, so a count ≥ 1 always has its signal.
        let n = self.count.load(Ordering::SeqCst);
        let signal = self.first.load(Ordering::SeqCst);
        match n {
            0 => CancelState::Running,
            1 => CancelState::Cancelling { signal },
            _ => CancelState::Abandoned { signal },
        }
    }

    /// Runs `hook` on the first signal (at once if one already arrived).
    pub fn on_first(&self, hook: impl FnOnce(i32) + Send + 'static) {
        if self.cancelled() {
            hook(self.first.load(Ordering::SeqCst));
        } else {
            *self.on_first.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
            // a signal may have arrived between the check and the store
            if self.cancelled() {
                if let Some(h) = self
                    .on_first
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    h(self.first.load(Ordering::SeqCst));
                }
            }
        }
    }

    /// Drops the hooks (the run is over).
    pub fn clear_hook(&self) {
        take(&self.on_first);
        take(&self.on_second);
    }

    /// Marks the run as over (once: later calls change nothing): later signals only cut short
    /// the wait for deliveries. Called as soon as the outcome is decided, so a signal that
    /// arrives while the final record is written counts as one to stop waiting, not as one
    /// the run already acted on.
    pub fn run_over(&self) {
        if self.over.load(Ordering::SeqCst) {
            return;
        }
        self.before_over
            .store(self.count.load(Ordering::SeqCst), Ordering::SeqCst);
        self.over.store(true, Ordering::SeqCst);
    }

    /// How many signals the run itself received (before [`Signals::run_over`]); those after it
    /// are for the wait for deliveries.
    pub fn received_while_running(&self) -> usize {
        self.before_over.load(Ordering::SeqCst)
    }

    /// How many signals arrived so far.
    pub fn received(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn cancelled(&self) -> bool {
        self.count.load(Ordering::SeqCst) >= 1
    }

    pub fn abandoned(&self) -> bool {
        self.count.load(Ordering::SeqCst) >= 2
    }

    /// 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
    pub fn exit_code(&self) -> i32 {
        code_of(self.first.load(Ordering::SeqCst))
    }
}

fn take(hook: &Mutex<Option<Hook>>) -> Option<Hook> {
    hook.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The signal's name, for messages and records.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "SIGTERM",
    }
}
