//! What the demo shows while it works: a bar per mapping during the initial load, then one live
//! line during incremental sync. On a terminal they animate; otherwise (a pipe, a CI log) they
//! print plain lines now and then, so logs stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) line repeats the live figures.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Out {
    tty: bool,
    multi: MultiProgress,
}

impl Out {
    pub fn new() -> Out {
        let tty = std::io::stdout().is_terminal();
        let target = if tty {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        Out {
            tty,
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A line of its own, above any bar.
    pub fn say(&self, line: &str) {
        if self.tty {
            let _ = self.multi.println(line);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    pub fn load_bar(&self, object: &str, total: u64) -> LoadBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:40}] {pos:>7}/{len:7} records  {elapsed}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(object.to_owned());
        if !self.tty {
            self.say(&format!("loading {object}: {total} records"));
        }
        LoadBar {
            out: self.clone(),
            object: object.to_owned(),
            bar,
            done: false,
        }
    }

    pub fn live_line(&self) -> LiveLine {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        if self.tty {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        LiveLine {
            out: self.clone(),
            bar,
            last_plain: None,
        }
    }
}

pub struct LoadBar {
    out: Out,
    object: String,
    bar: ProgressBar,
    done: bool,
}

impl LoadBar {
    pub fn set(&mut self, loaded: u64, done: bool) {
        if self.done {
            return;
        }
        self.bar
            .set_position(loaded.min(self.bar.length().unwrap_or(loaded)));
        if done {
            self.done = true;
            self.bar.set_position(self.bar.length().unwrap_or(loaded));
            self.bar.finish();
            if !self.out.tty {
                self.out.say(&format!(
                    "loaded {}: {loaded} records in {:.1} s",
                    self.object,
                    self.bar.elapsed().as_secs_f64()
                ));
            }
        }
    }
}

pub struct LiveLine {
    out: Out,
    bar: ProgressBar,
    last_plain: Option<Instant>,
}

impl LiveLine {
    pub fn set(&mut self, message: String) {
        if self.out.tty {
            self.bar.set_message(message);
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            self.last_plain = Some(Instant::now());
            self.out.say(&message);
        }
    }

    /// Leaves the last figures on screen as a plain line.
    pub fn finish(self, message: String) {
        self.bar.finish_and_clear();
        self.out.say(&message);
    }
}
