//! What the demo shows while it runs: one status line per second on stderr, redrawn in place on a terminal and
//! printed as plain lines otherwise, plus the same figures as a JSON line on stdout.
//!
//! Messages (a consumer started, the drain began) are printed above the status line. On a terminal every line
//! ends in `\r\n`: in raw mode (keys enabled) a bare `\n` moves down without returning to the first column.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use common::queue::Depth;
use common::stats::{Kind, Line};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, queue};

/// The part of the demo that is running, shown in the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    StoppingProducer,
    Draining,
    Stopping,
}

impl Phase {
    /// The name in the JSON lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::StoppingProducer => "stopping_producer",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
        }
    }

    /// The name in the status line.
    pub fn label(self) -> &'static str {
        match self {
            Phase::StoppingProducer => "stopping producer",
            other => other.as_str(),
        }
    }
}

/// The figures of one progress tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub elapsed: Duration,
    pub phase: Phase,
    /// `None` when the queue could not be read this time.
    pub depth: Option<Depth>,
    /// The producer's confirmed sends per second over its last interval.
    pub produce_rate: f64,
    /// The sum of the running consumers' acks per second over their last interval.
    pub consume_rate: f64,
    pub consumers: usize,
    /// The highest of the running consumers' last-interval p99s: a bound on the fleet's p99.
    pub e2e_p99_us: u64,
    /// `None` when no remainder runs.
    pub remainder_units_per_s: Option<f64>,
}

impl Figures {
    /// The status text, e.g. `12.0s running  depth 14 (3 in flight)  produce 100/s  consume 98/s ...`.
    pub fn text(&self) -> String {
        let depth = match self.depth {
            Some(d) => match d.in_flight {
                Some(f) => format!("depth {} ({f} in flight)", d.total()),
                None => format!("depth {}", d.total()),
            },
            None => "depth ?".to_string(),
        };
        let remainder = match self.remainder_units_per_s {
            Some(u) => format!("  remainder {u:.0} units/s"),
            None => String::new(),
        };
        format!(
            "{:>6.1}s {:<9}  {depth}  produce {:.0}/s  consume {:.0}/s  consumers {}  e2e p99 {}{remainder}",
            self.elapsed.as_secs_f64(),
            self.phase.label(),
            self.produce_rate,
            self.consume_rate,
            self.consumers,
            format_us(self.e2e_p99_us),
        )
    }

    /// The same figures as the demo's `interval` stats line.
    pub fn line(&self, started: Instant) -> Line {
        Line::new("demo", Kind::Interval, started)
            .field("phase", self.phase.as_str())
            .field("depth", self.depth.map(|d| d.total()))
            .field("in_flight", self.depth.and_then(|d| d.in_flight))
            .field("produce_rate", self.produce_rate)
            .field("consume_rate", self.consume_rate)
            .field("consumers", self.consumers)
            .field("e2e_p99_us", self.e2e_p99_us)
            .field("remainder_units_per_s", self.remainder_units_per_s)
    }
}

/// A latency in µs for people: `850µs`, `41.2ms`, `3.05s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

/// Stderr for people, stdout for the JSON lines.
pub struct Console {
    /// Stderr is a terminal: redraw the status line in place.
    tty: bool,
    /// Stdout is a terminal too (most likely the same one): JSON lines must not land inside the status line.
    stdout_tty: bool,
    /// The status line currently drawn, to redraw it after a message.
    status: Option<String>,
    /// A legend drawn under the status line (the keys), when keys are read.
    legend: Option<&'static str>,
}

impl Console {
    pub fn new() -> Console {
        Console {
            tty: std::io::stderr().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
            status: None,
            legend: None,
        }
    }

    /// Shows `legend` under the status line from now on.
    pub fn set_legend(&mut self, legend: &'static str) {
        self.legend = Some(legend);
    }

    fn eol(&self) -> &'static str {
        if self.tty { "\r\n" } else { "\n" }
    }

    /// Prints a message for people.
    pub fn note(&mut self, msg: &str) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        let eol = self.eol();
        let _ = write!(err, "{}{eol}", msg.replace('\n', eol));
        self.draw(&mut err);
    }

    /// Shows a tick's figures: the status line on stderr, the JSON line on stdout.
    pub fn tick(&mut self, figures: &Figures, started: Instant) {
        let text = figures.text();
        let mut err = std::io::stderr().lock();
        if self.tty {
            self.clear(&mut err);
            self.status = Some(text);
            if !self.stdout_tty {
                self.draw(&mut err);
            }
        } else {
            let _ = writeln!(err, "{text}");
        }
        drop(err);
        figures.line(started).emit();
        if self.tty && self.stdout_tty {
            let mut out = std::io::stdout().lock();
            // In raw mode the JSON line's '\n' did not return the carriage.
            let _ = out.write_all(b"\r").and_then(|_| out.flush());
            drop(out);
            self.draw(&mut std::io::stderr().lock());
        }
    }

    /// Removes the status line for good (before the final report).
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        self.status = None;
        self.legend = None;
    }

    /// Erases the status line and legend, leaving the cursor at the start of the status line.
    fn clear(&self, err: &mut impl Write) {
        if !self.tty || self.status.is_none() {
            return;
        }
        if self.legend.is_some() {
            let _ = queue!(err, cursor::MoveToColumn(0), Clear(ClearType::CurrentLine));
            let _ = queue!(err, cursor::MoveUp(1));
        }
        let _ = queue!(err, cursor::MoveToColumn(0), Clear(ClearType::CurrentLine));
        let _ = err.flush();
    }

    /// Draws the status line (cut to the terminal's width, so that it never wraps and can be redrawn) and the
    /// legend under it.
    fn draw(&self, err: &mut impl Write) {
        let Some(status) = self.status.as_deref().filter(|_| self.tty) else {
            let _ = err.flush();
            return;
        };
        // Some terminals (and pseudo-terminals without a size) report 0 columns: then do not cut.
        let width = match terminal::size() {
            Ok((w, _)) if w > 0 => (w as usize).max(20),
            _ => 500,
        };
        let cut = |s: &str| s.chars().take(width - 1).collect::<String>();
        let _ = write!(err, "{}", cut(status));
        if let Some(legend) = self.legend {
            let _ = write!(err, "\r\n{}", cut(legend));
        }
        let _ = err.flush();
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_a_status_line_and_a_stats_line() {
        let f = Figures {
            elapsed: Duration::from_millis(12_040),
            phase: Phase::Running,
            depth: Some(Depth {
                visible: 11,
                in_flight: Some(3),
            }),
            produce_rate: 100.0,
            consume_rate: 97.6,
            consumers: 3,
            e2e_p99_us: 41_234,
            remainder_units_per_s: Some(690.4),
        };
        let text = f.text();
        for part in [
            "12.0s",
            "depth 14 (3 in flight)",
            "produce 100/s",
            "consume 98/s",
            "consumers 3",
            "e2e p99 41.2ms",
            "remainder 690 units/s",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(format_us(850), "850µs");
        assert_eq!(format_us(3_050_000), "3.05s");
    }
}
