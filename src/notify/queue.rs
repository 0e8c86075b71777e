//! Notifications and events off the deploy's critical path.
//!
//! Delivery with retries can take 45 s when a webhook accepts connections and never answers; a
//! deploy must never wait for it — not before its first stage, not between a tripped gate and
//! its rollback. The engine hands each notification (and each deploy event) to this queue,
//! which delivers it on a thread of its own at once, so deliveries run concurrently and a dead
//! sink costs the whole run about one delivery's worst case, not the sum of them.
//!
//! Records are written by one writer thread in the order the deliveries were queued (an audit
//! trail reads "started" before "deployed" even when the first delivery took longer), each as
//! soon as it and every delivery queued before it are done. The command waits for the queue
//! only after the deploy's outcome is decided and reported, so every notification still becomes
//! an audit record and every event a history record; if that wait is longer than a moment, it
//! says so on stderr.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Notification, Notifier};
use crate::ledger::Ledger;

/// The second half of a delivery: writes its record, returns a warning for the command to show.
pub type Record = Box<dyn FnOnce(&Ledger) -> Option<String> + Send>;
/// The first half of a delivery: the slow part (HTTP with retries), run on its own thread.
pub type Deliver = Box<dyn FnOnce() -> Record + Send>;

/// What a queued delivery is, for the waiting line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Notification,
    Event,
}

/// A delivery whose thread has not finished.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    kind: Kind,
    /// When it gives up at the latest if its sink never answers.
    gives_up_at: Instant,
}

/// What the writer thread receives: a finished delivery's record (`None`: its thread
/// panicked), or word that the queue was closed (`total` is set: look at it now rather than at
/// the next message).
enum Msg {
    Done(u64, Option<Record>),
    Closed,
}

/// The queue while it accepts work.
struct Open {
    next: u64,
    tx: mpsc::Sender<Msg>,
    writer: Writer,
}

/// Who writes the records: a thread, or (when it could not start) `finish` itself.
enum Writer {
    Thread(JoinHandle<Vec<String>>),
    Inline(Option<mpsc::Receiver<Msg>>, Ledger),
}

pub struct Queue {
    notifier: Arc<Notifier>,
    open: Mutex<Option<Open>>,
    in_flight: Arc<Mutex<BTreeMap<u64, InFlight>>>,
    /// For each delivery still running: the record to write instead should the wait for it be
    /// cut short. A delivery whose fallback was taken records nothing itself.
    fallbacks: Arc<Mutex<BTreeMap<u64, Record>>>,
    /// How many deliveries were queued in all, once the queue is closed: the writer stops when
    /// it has written that many (delivery threads may still hold senders).
    total: Arc<Mutex<Option<u64>>>,
}

/// Why a delivery given up by [`Queue::finish_or_abandon`] was not delivered.
pub const ABANDONED: &str = "not delivered: shipgate was interrupted while it was delivering";

/// How long [`Queue::finish`] waits before it says that it is waiting: deliveries to sinks
/// that answer finish well within it, and then nothing is printed.
const QUIET_WAIT: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    /// Starts the writer thread; deliveries get their threads as they are queued.
    pub fn start(notifier: Notifier, ledger: Ledger) -> Queue {
        let (tx, rx) = mpsc::channel::<Msg>();
        // Shared so that, should the thread fail to start, `finish` writes the records itself.
        let rx = Arc::new(Mutex::new(Some(rx)));
        let total: Arc<Mutex<Option<u64>>> = Arc::default();
        let writer = {
            let rx = rx.clone();
            let ledger = ledger.clone();
            let total = total.clone();
            std::thread::Builder::new()
                .name("notify-records".into())
                .spawn(move || match lock(&rx).take() {
                    Some(rx) => write_in_order(rx, &ledger, &total),
                    None => Vec::new(),
                })
        };
        let writer = match writer {
            Ok(handle) => Writer::Thread(handle),
            Err(_) => Writer::Inline(lock(&rx).take(), ledger),
        };
        Queue {
            notifier: Arc::new(notifier),
            open: Mutex::new(Some(Open {
                next: 0,
                tx,
                writer,
            })),
            in_flight: Arc::new(Mutex::new(BTreeMap::new())),
            fallbacks: Arc::default(),
            total,
        }
    }

    /// Queues a notification; never blocks. It is delivered to its sinks and then recorded in
    /// audit.jsonl.
    pub fn send(&self, n: Notification) {
        let notifier = self.notifier.clone();
        let give_up_after = notifier.give_up_after();
        let fallback: Record = {
            let delivery = notifier.abandoned(&n, ABANDONED);
            let n = n.clone();
            Box::new(move |ledger: &Ledger| super::record(ledger, &n, delivery))
        };
        self.submit_with_fallback(
            Kind::Notification,
            give_up_after,
            Box::new(move || {
                let delivery = notifier.deliver(&n);
                Box::new(move |ledger: &Ledger| super::record(ledger, &n, delivery))
            }),
            Some(fallback),
        );
    }

    /// Queues any delivery (a deploy's event, say); never blocks. `deliver` runs on its own
    /// thread; the record it returns is written in queue order. `give_up_after` bounds how long
    /// it runs when its sink never answers (for the waiting line).
    pub fn submit(&self, kind: Kind, give_up_after: Duration, deliver: Deliver) {
        self.submit_with_fallback(kind, give_up_after, deliver, None);
    }

    /// [`Queue::submit`], with the record to write instead if the wait for this delivery is
    /// cut short ([`Queue::finish_or_abandon`]).
    pub fn submit_with_fallback(
        &self,
        kind: Kind,
        give_up_after: Duration,
        deliver: Deliver,
        fallback: Option<Record>,
    ) {
        let mut open = lock(&self.open);
        let Some(open) = open.as_mut() else {
            return;
        };
        let seq = open.next;
        open.next += 1;
        lock(&self.in_flight).insert(
            seq,
            InFlight {
                kind,
                gives_up_at: Instant::now() + give_up_after,
            },
        );
        // The job is shared with the thread so that, should the thread fail to start, it can
        // still run here: slower, but nothing is lost.
        let has_fallback = fallback.is_some();
        if let Some(f) = fallback {
            lock(&self.fallbacks).insert(seq, f);
        }
        let job = Arc::new(Mutex::new(Some(deliver)));
        let run = {
            let job = job.clone();
            let tx = open.tx.clone();
            let in_flight = self.in_flight.clone();
            let fallbacks = self.fallbacks.clone();
            move || {
                let deliver = lock(&job).take();
                let record =
                    deliver.and_then(|d| std::panic::catch_unwind(AssertUnwindSafe(d)).ok());
                lock(&in_flight).remove(&seq);
                // Its fallback gone means the wait was cut short and the fallback is (being)
                // written: this record must not be written twice.
                let abandoned = has_fallback && lock(&fallbacks).remove(&seq).is_none();
                if !abandoned {
                    let _ = tx.send(Msg::Done(seq, record));
                }
            }
        };
        let spawned = std::thread::Builder::new()
            .name("notify".into())
            .spawn(run.clone());
        if spawned.is_err() {
            run();
        }
    }

    /// Closes the queue and waits until every delivery has finished (delivered, or failed
    /// after its retries) and been recorded. When that takes more than a moment, `waiting` is
    /// called once with a line saying what it waits for. Returns the delivery warnings, in
    /// queue order.
    pub fn finish(&self, waiting: impl FnOnce(&str)) -> Vec<String> {
        self.finish_or_abandon(waiting, || false)
    }

    /// [`Queue::finish`], but when `interrupted()` turns true while it waits (a signal: the
    /// person or the CI runner wants it to end), the deliveries still running are given up:
    /// each is recorded at once as not delivered, and it returns without waiting for them.
    /// Nothing queued goes unrecorded either way.
    pub fn finish_or_abandon(
        &self,
        waiting: impl FnOnce(&str),
        interrupted: impl Fn() -> bool,
    ) -> Vec<String> {
        let Some(Open { tx, writer, next }) = lock(&self.open).take() else {
            return Vec::new();
        };
        *lock(&self.total) = Some(next);
        let _ = tx.send(Msg::Closed);
        let writer = match writer {
            Writer::Thread(handle) => handle,
            Writer::Inline(rx, ledger) => {
                drop(tx);
                return rx.map_or_else(Vec::new, |rx| write_in_order(rx, &ledger, &self.total));
            }
        };
        let mut waiting = Some(waiting);
        let quiet_until = Instant::now() + QUIET_WAIT;
        let mut gave_up: Option<usize> = None;
        let mut pause = Duration::from_micros(250);
        while !writer.is_finished() {
            if Instant::now() >= quiet_until {
                if let Some(w) = waiting.take() {
                    let pending: Vec<InFlight> = lock(&self.in_flight).values().copied().collect();
                    if let Some(line) = waiting_line(&pending, Instant::now()) {
                        w(&line);
                    }
                }
            }
            if gave_up.is_none() && interrupted() {
                let given_up = std::mem::take(&mut *lock(&self.fallbacks));
                gave_up = Some(given_up.len());
                for (seq, record) in given_up {
                    let _ = tx.send(Msg::Done(seq, Some(record)));
                }
            }
            // Short at first (with nothing in flight the writer is done at once), then 10 ms.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        drop(tx);
        let mut warnings = writer.join().unwrap_or_default();
        if let Some(n) = gave_up.filter(|n| *n > 0) {
            warnings.push(format!(
                "stopped waiting for deliveries: {n} recorded as not delivered"
            ));
        }
        warnings
    }
}

impl Drop for Queue {
    /// Every queued delivery is finished and recorded before the process goes on, even on an
    /// early return.
    fn drop(&mut self) {
        self.finish(|_| {});
    }
}

/// The writer thread: records each delivery once it and every earlier one are done.
/// It ends when every queued delivery is written (once the queue is closed, `total` says how
/// many there are), or when every sender is gone.
fn write_in_order(
    rx: mpsc::Receiver<Msg>,
    ledger: &Ledger,
    total: &Mutex<Option<u64>>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut done: BTreeMap<u64, Option<Record>> = BTreeMap::new();
    let mut next = 0u64;
    let write = |record: Option<Record>, warnings: &mut Vec<String>| match record {
        Some(record) => warnings.extend(record(ledger)),
        None => warnings.push("a delivery thread panicked; its record is missing".into()),
    };
    loop {
        if lock(total).is_some_and(|t| next >= t) {
            return warnings;
        }
        match rx.recv() {
            Ok(Msg::Done(seq, record)) => {
                done.insert(seq, record);
                while let Some(record) = done.remove(&next) {
                    write(record, &mut warnings);
                    next += 1;
                }
            }
            Ok(Msg::Closed) => {}
            Err(mpsc::RecvError) => break,
        }
    }
    // Every sender is gone, so every delivery has reported; nothing is left unless a thread
    // died without unwinding. Whatever is here is written all the same.
    for (_, record) in std::mem::take(&mut done) {
        write(record, &mut warnings);
    }
    warnings
}

/// `waiting for 2 notification(s) and 1 event(s) to be delivered (up to 45s)…`, or `None`
/// when no delivery is in flight (only records are left to write).
fn waiting_line(pending: &[InFlight], now: Instant) -> Option<String> {
    let count = |kind| pending.iter().filter(|p| p.kind == kind).count();
    let (notifications, events) = (count(Kind::Notification), count(Kind::Event));
    let what = match (notifications, events) {
        (0, 0) => return None,
        (n, 0) => format!("{n} notification(s)"),
        (0, e) => format!("{e} event(s)"),
        (n, e) => format!("{n} notification(s) and {e} event(s)"),
    };
    let last = pending.iter().map(|p| p.gives_up_at).max()?;
    let secs = last.saturating_duration_since(now).as_secs_f64().ceil() as u64;
    Some(format!(
        "waiting for {what} to be delivered (up to {}s)…",
        secs.max(1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue without sinks, recording in `dir`.
    fn sinkless_queue(dir: &std::path::Path) -> Queue {
        Queue::start(
            Notifier {
                app: "web".into(),
                sinks: Vec::new(),
                policy: Default::default(),
            },
            Ledger::open(dir).unwrap(),
        )
    }

    fn in_flight(kind: Kind, now: Instant, secs: u64) -> InFlight {
        InFlight {
            kind,
            gives_up_at: now + Duration::from_millis(secs * 1000 - 300),
        }
    }

    #[test]
    fn the_waiting_line_counts_what_is_in_flight_and_the_longest_wait() {
        let now = Instant::now();
        assert_eq!(waiting_line(&[], now), None);
        let pending = [
            in_flight(Kind::Notification, now, 45),
            in_flight(Kind::Notification, now, 30),
            in_flight(Kind::Notification, now, 12),
        ];
        assert_eq!(
            waiting_line(&pending, now).unwrap(),
            "waiting for 3 notification(s) to be delivered (up to 45s)…"
        );
        let pending = [
            in_flight(Kind::Event, now, 20),
            in_flight(Kind::Notification, now, 44),
        ];
        assert_eq!(
            waiting_line(&pending, now).unwrap(),
            "waiting for 1 notification(s) and 1 event(s) to be delivered (up to 44s)…"
        );
        assert_eq!(
            waiting_line(
                &[in_flight(Kind::Event, now, 1)],
                now + Duration::from_secs(5)
            )
            .unwrap(),
            "waiting for 1 event(s) to be delivered (up to 1s)…"
        );
    }

    /// Deliveries run side by side; their records are written in queue order.
    #[test]
    fn deliveries_run_concurrently_and_are_recorded_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let queue = sinkless_queue(dir.path());
        let order = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        for (i, ms) in [(0u32, 3000u64), (1, 1500), (2, 0)] {
            let order = order.clone();
            queue.submit(
                Kind::Event,
                Duration::from_millis(ms),
                Box::new(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    Box::new(move |_: &Ledger| {
                        lock(&order).push(i);
                        Some(format!("w{i}"))
                    })
                }),
            );
        }
        let mut lines = Vec::new();
        let warnings = queue.finish(|l| lines.push(l.to_string()));
        let took = start.elapsed();
        assert_eq!(warnings, ["w0", "w1", "w2"]);
        assert_eq!(*lock(&order), [0, 1, 2]);
        // One after another would take 4.5 s; side by side about 3 s.
        assert!(took < Duration::from_millis(4200), "{took:?}");
        // The first delivery outlasts the quiet second: one line says what is awaited.
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("waiting for ") && lines[0].contains(" event(s) to be delivered"),
            "{lines:?}"
        );
    }

    #[test]
    fn an_abandoned_wait_records_each_fallback_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let queue = sinkless_queue(dir.path());
        let written = Arc::new(Mutex::new(Vec::new()));
        let record = |what: String, written: &Arc<Mutex<Vec<String>>>| -> Record {
            let written = written.clone();
            Box::new(move |_: &Ledger| {
                lock(&written).push(what);
                None
            })
        };
        // 0 is quick, 1 is slow; both can fall back.
        for (i, ms) in [(0u32, 0u64), (1, 2000)] {
            let real = record(format!("real {i}"), &written);
            queue.submit_with_fallback(
                Kind::Notification,
                Duration::from_millis(ms),
                Box::new(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    real
                }),
                Some(record(format!("fallback {i}"), &written)),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&written).is_empty() {
            assert!(Instant::now() < deadline, "the quick delivery never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        let warnings = queue.finish_or_abandon(|_| {}, || true);
        assert_eq!(
            warnings,
            ["stopped waiting for deliveries: 1 recorded as not delivered"]
        );
        assert_eq!(*lock(&written), ["real 0", "fallback 1"]);
        // The slow delivery ends later and writes nothing more.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(*lock(&written), ["real 0", "fallback 1"]);
    }

    #[test]
    fn a_panicking_delivery_is_reported_and_does_not_hold_up_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let queue = sinkless_queue(dir.path());
        queue.submit(Kind::Event, Duration::ZERO, Box::new(|| panic!("boom")));
        queue.submit(
            Kind::Event,
            Duration::ZERO,
            Box::new(|| Box::new(|_: &Ledger| Some("after".to_string()))),
        );
        let warnings = queue.finish(|_| {});
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("panicked"), "{warnings:?}");
        assert_eq!(warnings[1], "after");
    }
}
