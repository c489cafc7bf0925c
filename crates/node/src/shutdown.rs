//! How every long-running component of the engine runs and stops: a plain task on the current
//! arbiter ([`Running`]), told to stop through one [`StopSignal`], awaited until it has finished
//! what it was doing. The MappingPoller, the SecondaryPollPool, WriteBack and the cluster
//! worker's loops all use it, so "stop, then wait until it is done" means the same everywhere.
//!
//! Loops are written as a [`Tick`]: one unit of work that returns the delay before the next, so
//! the waiting (a timer, a wake-up, or the stop signal, whichever comes first) lives in one place,
//! [`run_loop`].

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The switch that tells tasks to stop. Dropping it stops them too.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }

    /// What a task watches; every signal of one switch stops together.
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells every task watching this switch to stop after its current step; does not wait.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }
}

/// A task's view of its [`Shutdown`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StopSignal {
    rx: watch::Receiver<bool>,
}

impl StopSignal {
    pub fn is_stopping(&self) -> bool {
        // A dropped switch can never be triggered: its tasks have no owner left and stop.
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the switch is triggered (or dropped).
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Sleeps `d` unless told to stop first; true when stopping.
    pub async fn sleep(&self, d: Duration) -> bool {
        if self.is_stopping() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stopped() => {}
        }
        self.is_stopping()
    }
}

/// A spawned long-running component: its switch and its task.
#[derive(Debug)]
pub struct Running {
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl Running {
    /// Spawns `f(signal)` on the current arbiter (components hold `!Send` actor addresses and
    /// must run where the engine's actors do).
    pub fn spawn<F, Fut>(f: F) -> Running
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let shutdown = Shutdown::new();
        let task = actix_rt::spawn(f(shutdown.signal()));
        Running { shutdown, task }
    }

    /// Spawns `f` watching an existing switch (a mapping's poller and its secondary polls share
    /// one).
    pub fn spawn_with<Fut>(shutdown: Shutdown, fut: Fut) -> Running
    where
        Fut: Future<Output = ()> + 'static,
    {
        let task = actix_rt::spawn(fut);
        Running { shutdown, task }
    }

    /// Tells the task to stop after its current step, without waiting.
    pub fn signal_stop(&self) {
        self.shutdown.trigger();
    }

    /// Tells the task to stop and waits until it has (its current step finishes first).
    pub async fn stop(self) {
        self.shutdown.trigger();
        // A panicked task is stopped too, which is all this waits for.
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// One unit of a loop's work at a time. `tick` returns how long to wait before the next one, or
/// `None` to end the loop.
pub trait Tick {
    fn tick(&mut self, stop: &StopSignal) -> impl Future<Output = Option<Duration>>;

    /// Resolves when there is work before the delay runs out (a NOTIFY); never by default.
    fn woken(&self) -> impl Future<Output = ()> {
        std::future::pending()
    }

    /// Runs once after the last tick, stop or not.
    fn finish(&mut self) -> impl Future<Output = ()> {
        async {}
    }
}

/// Runs `t` until it ends or `stop` is triggered; a tick under way always completes.
pub async fn run_loop<T: Tick>(mut t: T, stop: StopSignal) {
    while !stop.is_stopping() {
        let Some(delay) = t.tick(&stop).await else {
            break;
        };
        if delay.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = t.woken() => {}
            _ = stop.stopped() => {}
        }
    }
    t.finish().await;
}

/// Spawns `t` as a [`Running`] loop.
pub fn spawn_loop<T: Tick + 'static>(t: T) -> Running {
    Running::spawn(move |stop| run_loop(t, stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    struct Counter(Arc<AtomicU32>);

    impl Tick for Counter {
        async fn tick(&mut self, _: &StopSignal) -> Option<Duration> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Some(Duration::from_secs(3600))
        }
    }

    #[actix_rt::test]
    async fn stop_interrupts_the_wait_and_waits_for_the_task() {
        let ticks = Arc::new(AtomicU32::new(0));
        let running = spawn_loop(Counter(ticks.clone()));
        tokio::task::yield_now().await;
        // Waiting out the hour would hang the test: the stop has to cut the delay short.
        running.stop().await;
        assert_eq!(ticks.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn a_dropped_switch_stops_its_tasks() {
        let shutdown = Shutdown::new();
        let signal = shutdown.signal();
        assert!(!signal.is_stopping());
        drop(shutdown);
        assert!(signal.is_stopping());
        assert!(signal.sleep(Duration::from_secs(3600)).await);
    }
}
