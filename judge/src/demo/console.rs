//! What the demo shows while it runs: one status line per second on stderr, redrawn in place on a terminal and
//! printed as plain lines otherwise, plus the same figures as a JSON line to the JSON sink (stdout when it is
//! not a terminal, or the --json file). The status line is fitted to the terminal's width: full labels when
//! they fit, short ones otherwise, so that no figure is ever cut off.
//!
//! Messages (a consumer started, the drain began) are printed above the status line. On a terminal every line
//! ends in `\r\n`: in raw mode (keys enabled) a bare `\n` moves down without returning to the first column.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, queue};
use queues::Depth;
use workload::contract::{self, Head, Kind};
use workload::stats;

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

    /// The name in the short status line.
    pub fn short_label(self) -> &'static str {
        match self {
            Phase::Running => "run",
            Phase::StoppingProducer => "stop-p",
            Phase::Draining => "drain",
            Phase::Stopping => "stop",
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
    /// The highest of the running consumers' last-interval p99s: a bound on the fleet's p99; `None` before
    /// anything was consumed.
    pub e2e_p99_us: Option<u64>,
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
            self.p99(),
        )
    }

    /// The same figures with short labels, for a narrow terminal (under 80 columns for any figures a demo
    /// can produce): `12.0s run  depth 14  in 100  out 98  cons 3  p99 41.2ms  rem 690`.
    pub fn short_text(&self) -> String {
        let depth = self
            .depth
            .map_or_else(|| "?".to_string(), |d| si(d.total() as f64));
        let remainder = match self.remainder_units_per_s {
            Some(u) => format!("  rem {}", si(u)),
            None => String::new(),
        };
        let secs = self.elapsed.as_secs_f64();
        // Rates without their "/s" (the full line, shown where it fits, says msgs/s and units/s).
        format!(
            "{}s {}  depth {depth}  in {}  out {}  cons {}  p99 {}{remainder}",
            if secs < 1000.0 {
                format!("{secs:.1}")
            } else {
                format!("{secs:.0}")
            },
            self.phase.short_label(),
            si(self.produce_rate),
            si(self.consume_rate),
            self.consumers,
            self.p99(),
        )
    }

    /// The status text that fits in `width` columns (leaving the last one free, so that it never wraps).
    pub fn text_for(&self, width: usize) -> String {
        let full = self.text();
        if full.chars().count() < width {
            full
        } else {
            self.short_text()
        }
    }

    fn p99(&self) -> String {
        self.e2e_p99_us.map_or_else(|| "-".into(), format_us)
    }

    /// The same figures as the demo's `interval` stats line.
    pub fn line(&self, started: Instant) -> contract::DemoInterval {
        contract::DemoInterval {
            head: Head::new("demo", Kind::Interval, started),
            phase: self.phase.as_str().to_string(),
            depth: self.depth.map(|d| d.total()),
            in_flight: self.depth.and_then(|d| d.in_flight),
            produce_rate: self.produce_rate,
            consume_rate: self.consume_rate,
            consumers: self.consumers as u64,
            // 0 before anything was consumed, as before: the stats contract's field is a number.
            e2e_p99_us: self.e2e_p99_us.unwrap_or(0),
            // A sum of the remainders' rates, each to 0.1: rounded again, or float noise shows
            // (0.30000000000000004).
            remainder_units_per_s: self.remainder_units_per_s.map(round1),
        }
    }
}

/// A rate to 0.1, the precision of every rate in the stats lines (`workload::stats::rate`).
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0 + 0.0
}

/// A count or rate in at most 5 characters: `980`, `9999`, `12.3k`, `456k`, `4.5M`, `10.0G`.
fn si(v: f64) -> String {
    let v = v.max(0.0);
    if v < 9_999.5 {
        return format!("{v:.0}");
    }
    for (scale, unit) in [(1e3, "k"), (1e6, "M")] {
        let x = v / scale;
        if x < 99.95 {
            return format!("{x:.1}{unit}");
        }
        if x < 999.5 {
            return format!("{x:.0}{unit}");
        }
    }
    format!("{:.1}G", v / 1e9)
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

/// Stderr for people, the JSON sink for the JSON lines.
pub struct Console {
    /// Stderr is a terminal: redraw the status line in place.
    tty: bool,
    /// Where the JSON lines go: stdout when it is not a terminal, the --json file, or nowhere.
    json: Option<Box<dyn Write + Send>>,
    /// The status line currently drawn, to redraw it after a message.
    status: Option<String>,
    /// A legend drawn under the status line (the keys), when keys are read.
    legend: Option<&'static str>,
    /// Why the JSON lines stopped being written, when the sink failed for another reason than its reader
    /// going away.
    json_failed: Option<String>,
}

impl Console {
    pub fn new(json: Option<Box<dyn Write + Send>>) -> Console {
        Console {
            tty: std::io::stderr().is_terminal(),
            json,
            status: None,
            legend: None,
            json_failed: None,
        }
    }

    /// Writes a JSON line to the sink. A sink that fails is dropped: the lines are a report, not the work, so
    /// the run goes on. A closed pipe is a reader that went away (`demo | head`) and is not news; any other
    /// failure (a full disk, a file that cannot take writes) loses the report, so it is shown at once and
    /// fails the demo at the end ([`Console::json_failed`]).
    pub fn emit(&mut self, line: &impl serde::Serialize) {
        let Some(out) = self.json.as_mut() else {
            return;
        };
        if let Err(e) = stats::write_to(line, out) {
            self.json = None;
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                let why =
                    format!("cannot write the JSON lines ({e}): the rest of them are not written");
                self.note(&format!("warning: {why}"));
                self.json_failed = Some(why);
            }
        }
    }

    /// Why the JSON lines could not all be written, when they could not.
    pub fn json_failed(&self) -> Option<&str> {
        self.json_failed.as_deref()
    }

    /// Shows `legend` under the status line from now on.
    pub fn set_legend(&mut self, legend: &'static str) {
        self.legend = Some(legend);
    }

    fn eol(&self) -> &'static str {
        if self.tty { "\r\n" } else { "\n" }
    }

    /// Prints a message for people; on a terminal, long lines are wrapped between words (the terminal itself
    /// would cut them mid-word at its edge).
    pub fn note(&mut self, msg: &str) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        let eol = self.eol();
        let text = if self.tty {
            let width = width() - 1;
            msg.lines()
                .flat_map(|l| wrap(l, width))
                .collect::<Vec<_>>()
                .join(eol)
        } else {
            msg.replace('\n', eol)
        };
        let _ = write!(err, "{text}{eol}");
        self.draw(&mut err);
    }

    /// Shows a tick's figures: the status line on stderr, the JSON line to the sink.
    pub fn tick(&mut self, figures: &Figures, started: Instant) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            self.clear(&mut err);
            self.status = Some(figures.text_for(width()));
            self.draw(&mut err);
        } else {
            let _ = writeln!(err, "{}", figures.text());
        }
        drop(err);
        self.emit(&figures.line(started));
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
        let width = width();
        let cut = |s: &str| s.chars().take(width - 1).collect::<String>();
        let _ = write!(err, "{}", cut(status));
        if let Some(legend) = self.legend {
            let _ = write!(err, "\r\n{}", cut(legend));
        }
        let _ = err.flush();
    }
}

/// `line` cut into lines of at most `width` columns between words, the continuations indented by two spaces
/// (a word longer than a line, a path say, is left whole on a line of its own).
fn wrap(line: &str, width: usize) -> Vec<String> {
    if line.chars().count() <= width {
        // Unchanged, indentation and aligned columns included.
        return vec![line.to_string()];
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in line.split(' ') {
        let len = cur.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            out.push(std::mem::replace(&mut cur, "  ".to_string()));
        } else if len > 0 && cur != "  " {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out
}

/// The terminal's width in columns. Some terminals (and pseudo-terminals without a size) report 0: then
/// nothing is cut.
fn width() -> usize {
    match terminal::size() {
        Ok((w, _)) if w > 0 => (w as usize).max(20),
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_wrap_between_words_with_indented_continuations() {
        let banner = "demo: producer at 100 msgs/s for 8s; consumers 3; work sleep:25ms; remainder with 1 \
                      thread(s); files in /tmp/queue-demo-hmhzk3";
        let lines = wrap(banner, 79);
        assert_eq!(
            lines,
            [
                "demo: producer at 100 msgs/s for 8s; consumers 3; work sleep:25ms; remainder",
                "  with 1 thread(s); files in /tmp/queue-demo-hmhzk3"
            ]
        );
        assert_eq!(
            lines.join(" ").split_whitespace().collect::<Vec<_>>(),
            banner.split(' ').collect::<Vec<_>>()
        );
        assert_eq!(
            wrap("  produced   800 messages", 79),
            ["  produced   800 messages"]
        );
        assert_eq!(wrap("a verylongword", 5), ["a", "  verylongword"]);
    }

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
            e2e_p99_us: Some(41_234),
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
        // Too wide for 80 columns in full: the short form keeps every figure, uncut.
        assert!(text.chars().count() >= 80, "{text}");
        let short = f.text_for(80);
        assert!(short.chars().count() < 80, "{short}");
        for part in [
            "depth 14",
            "in 100",
            "out 98",
            "cons 3",
            "p99 41.2ms",
            "rem 690",
        ] {
            assert!(short.contains(part), "{part} in {short}");
        }
        assert_eq!(f.text_for(200), text);
        assert_eq!(format_us(3_050_000), "3.05s");
    }

    #[test]
    fn the_short_line_fits_80_columns_even_with_large_figures_and_no_p99_yet_reads_a_dash() {
        let f = Figures {
            elapsed: Duration::from_secs(99_999),
            phase: Phase::StoppingProducer,
            depth: Some(Depth {
                visible: 9_999_999_999,
                in_flight: Some(9_999),
            }),
            produce_rate: 999_999.0,
            consume_rate: 999_999.0,
            consumers: 64,
            e2e_p99_us: None,
            remainder_units_per_s: Some(9_999_999.0),
        };
        let short = f.text_for(80);
        assert!(
            short.chars().count() < 80,
            "{} columns: {short}",
            short.len()
        );
        assert!(short.contains("p99 -"), "{short}");
        let slow = Figures {
            e2e_p99_us: Some(41_234_567),
            ..f.clone()
        };
        let short = slow.text_for(80);
        assert!(
            short.chars().count() < 80,
            "{} columns: {short}",
            short.len()
        );
        assert!(short.contains("depth 10.0G  in 1.0M  out 1.0M"), "{short}");
        assert!(f.text().contains("e2e p99 -"), "{}", f.text());
        let mut json = Vec::new();
        stats::write_to(&f.line(Instant::now()), &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["e2e_p99_us"], 0, "the stats contract keeps a number");
        // Three remainders at 0.1 units/s each sum to 0.30000000000000004; the line says 0.3.
        let three = Figures {
            remainder_units_per_s: Some(0.1 + 0.1 + 0.1),
            ..f.clone()
        };
        let mut json = Vec::new();
        stats::write_to(&three.line(Instant::now()), &mut json).unwrap();
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"remainder_units_per_s\":0.3"), "{text}");
        assert!(!text.contains("0.30000"), "{text}");
    }
}
