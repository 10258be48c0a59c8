//! The progress bar on stderr while a bench runs (hidden when stderr is not a terminal, so
//! scripts and `--json` pipelines see only the report).
//!
//! The clients only bump an atomic counter; a ticker task redraws the bar a few times a second,
//! so drawing costs the measured requests nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// The measured run: by time when it has a duration, else by requests out of the total.
    pub fn run(duration: Option<Duration>, total: Option<u64>, done: Arc<AtomicU64>) -> Progress {
        let started = Instant::now();
        match duration {
            Some(duration) => {
                let bar = bar(duration.as_millis() as u64, "{spinner} {elapsed:>4} [{bar:40}] {msg}");
                Progress::tick(bar, move |bar| {
                    let done = done.load(Ordering::Relaxed);
                    let elapsed = started.elapsed();
                    bar.set_position(elapsed.as_millis() as u64);
                    bar.set_message(format!("{done} requests, {:.0} req/s", rate(done, elapsed)));
                })
            }
            None => {
                let bar = bar(total.unwrap_or(0), "{spinner} {elapsed:>4} [{bar:40}] {pos}/{len} requests {msg}");
                Progress::tick(bar, move |bar| {
                    let done = done.load(Ordering::Relaxed);
                    bar.set_position(done);
                    bar.set_message(format!("{:.0} req/s", rate(done, started.elapsed())));
                })
            }
        }
    }

    /// Writing the keys that reads will ask for.
    pub fn preloading(keys: u64, written: Arc<AtomicU64>) -> Progress {
        let bar = bar(keys, "{spinner} preloading [{bar:40}] {pos}/{len} keys");
        Progress::tick(bar, move |bar| bar.set_position(written.load(Ordering::Relaxed)))
    }

    fn tick(bar: ProgressBar, redraw: impl Fn(&ProgressBar) + Send + 'static) -> Progress {
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(REDRAW_EVERY);
            loop {
                interval.tick().await;
                redraw(&ticking);
            }
        });
        Progress { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

fn bar(length: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(length).with_style(style.progress_chars("=> "))
}

fn rate(done: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    }
}
