//! Notifications off the deploy's critical path.
//!
//! Delivery with retries can take a minute when a webhook is down; a deploy must never wait for
//! it between a tripped gate and its rollback. The engine queues notifications here; one
//! background thread delivers them in order and writes their audit records. The command waits
//! for the queue to drain only after the deploy's outcome is decided and reported, so every
//! notification still becomes an audit record.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::{Notification, Notifier};
use crate::ledger::Ledger;

pub struct Queue {
    tx: Mutex<Option<mpsc::Sender<Notification>>>,
    worker: Mutex<Option<JoinHandle<Vec<String>>>>,
}

impl Queue {
    /// Starts the delivery thread.
    pub fn start(notifier: Notifier, ledger: Ledger) -> Queue {
        let (tx, rx) = mpsc::channel::<Notification>();
        let worker = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                let mut warnings = Vec::new();
                for n in rx {
                    if let Some(w) = notifier.send(&ledger, &n) {
                        warnings.push(w);
                    }
                }
                warnings
            })
            .ok();
        Queue {
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(worker),
        }
    }

    /// Queues a notification; never blocks.
    pub fn send(&self, n: Notification) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(n);
        }
    }

    /// Closes the queue and waits until every queued notification has been delivered (or has
    /// failed after its retries) and recorded. Returns the delivery warnings.
    pub fn finish(&self) -> Vec<String> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        match self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(handle) => handle.join().unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for Queue {
    /// Every queued notification is delivered and recorded before the process goes on, even on
    /// an early return.
    fn drop(&mut self) {
        self.finish();
    }
}
