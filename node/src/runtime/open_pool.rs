//! The threads that open logs: a small fixed pool, one thread per core
//! (2 to 8), shared by every node of the process. Opening a log creates a
//! directory and files, or recovers one, so it never runs on an event loop.
//! On tokio's blocking pool it ran on as many threads as opens were in
//! flight (64 per node, 192 in a 3-node `runnel dev`), which on two cores
//! only made them take turns with the event loops: creating 10,000 RF 3
//! partitions in a 3-node `runnel dev` took 3.7-4.0 s until every
//! partition had a leader and a full ISR; on this pool, 0.4 s until every
//! partition is led and 0.9 s until every ISR is full (2026-12-03, tmpfs).
//! The node still bounds what it queues here (`OPENS_IN_FLIGHT_MAX` per
//! node), so the queue is bounded too. Kafka recovers logs at startup on
//! `num.recovery.threads.per.data.dir` threads for the same reason.

use std::sync::{mpsc, Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads of the pool: the cores this process may use, 2 to 8.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Runs `job` on the pool (in submission order, as threads free up).
pub fn spawn(job: impl FnOnce() + Send + 'static) {
    static POOL: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let tx = POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("log-open-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panicking job must not take the thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                })
                .expect("spawn a log-opening thread");
        }
        tx
    });
    // The receiving threads never exit while the process runs.
    let _ = tx.send(Box::new(job));
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_job_runs_even_after_one_panics() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn(|| panic!("a failing open"));
        for i in 0..32 {
            let tx = tx.clone();
            super::spawn(move || tx.send(i).unwrap());
        }
        let mut got: Vec<i32> = (0..32).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..32).collect::<Vec<_>>());
    }
}
