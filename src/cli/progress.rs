//! Progress of a long-running command on stderr (DESIGN §10): an
//! `indicatif` bar on a terminal, plain lines otherwise — every 10 % when
//! the total is known, at least every 5 s while it moves, and whatever the
//! command prints between (per-collection lines, warnings).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress reporter.
pub enum Progress {
    /// On a terminal.
    Bar(ProgressBar),
    /// Not on a terminal: plain lines.
    Lines {
        /// The command, at the start of every line.
        label: &'static str,
        total: Option<u64>,
        done: u64,
        /// What is being worked on.
        stage: String,
        started: Instant,
        printed: Instant,
        tenth: u64,
    },
}

impl Progress {
    /// A reporter for `label`, out of `total` records when known.
    pub fn new(label: &'static str, total: Option<u64>) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} records ({percent}%, eta {eta}) {msg}"
            } else {
                "{elapsed_precise} {spinner} {human_pos} records ({per_sec}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Lines {
                label,
                total,
                done: 0,
                stage: String::new(),
                started: now,
                printed: now,
                tenth: 0,
            }
        }
    }

    /// Names what is being worked on now.
    pub fn start(&mut self, name: &str) {
        match self {
            Progress::Bar(bar) => bar.set_message(name.to_owned()),
            Progress::Lines { stage, .. } => *stage = name.to_owned(),
        }
    }

    /// `n` more records done.
    pub fn inc(&mut self, n: u64) {
        match self {
            Progress::Bar(bar) => bar.inc(n),
            Progress::Lines {
                label,
                total,
                done,
                stage,
                started,
                printed,
                tenth,
            } => {
                *done += n;
                let now_tenth = total.map_or(0, |t| *done * 10 / t.max(1));
                if now_tenth > *tenth || printed.elapsed() >= Duration::from_secs(5) {
                    *tenth = now_tenth;
                    *printed = Instant::now();
                    let of = match total {
                        Some(t) => format!("{done}/{t} records ({}%)", *done * 100 / (*t).max(1)),
                        None => format!("{done} records"),
                    };
                    eprintln!("{label}: {of}, {stage}, {:.1}s", started.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// A line of its own (above the bar on a terminal).
    pub fn println(&mut self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines { printed, .. } => {
                *printed = Instant::now();
                eprintln!("{line}");
            }
        }
    }

    /// A warning line.
    pub fn warn(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| eprintln!("{line}")),
            Progress::Lines { .. } => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
