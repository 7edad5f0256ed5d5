//! Keys typed while the demo runs in a terminal: `+` adds a consumer, `-` removes one, `q` or Ctrl-C stops.
//!
//! Single keys need the terminal in raw mode, which also turns Ctrl-C into a key instead of SIGINT. Raw mode
//! is restored by a `Drop` guard, on error and panic alike (a panic hook restores it even before the panic
//! message is printed, so the message is readable). Keys are read on a plain thread, because crossterm's
//! reads block; it polls so that it notices within 100 ms that the demo is done.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// How often the reader thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    AddConsumer,
    RemoveConsumer,
    Stop,
}

/// The legend shown under the status line.
pub const LEGEND: &str = "keys: + add a consumer, - remove one, q or Ctrl-C stop";

/// Keeps the terminal in raw mode while alive.
struct RawMode;

impl RawMode {
    fn enable() -> std::io::Result<RawMode> {
        terminal::enable_raw_mode()?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = terminal::disable_raw_mode();
            previous(info);
        }));
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = terminal::disable_raw_mode();
    }
}

/// The key reader: a thread sending [`Key`]s, and the raw mode it needs.
pub struct Keys {
    rx: UnboundedReceiver<Key>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    // Dropped after the thread has been joined (fields drop after `Drop::drop`), so the terminal is restored
    // only once nothing reads from it any more.
    _raw: RawMode,
}

impl Keys {
    /// Starts reading keys when stdin is a terminal; `Ok(None)` when it is not (no raw mode then).
    ///
    /// # Errors
    /// When the terminal refuses raw mode.
    pub fn start() -> std::io::Result<Option<Keys>> {
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        let raw = RawMode::enable()?;
        let (tx, rx) = unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("demo-keys".into())
            .spawn(move || read_keys(&tx, &s))?;
        Ok(Some(Keys {
            rx,
            stop,
            thread: Some(thread),
            _raw: raw,
        }))
    }

    /// The next key; pending forever once the reader has stopped.
    pub async fn next(&mut self) -> Key {
        match self.rx.recv().await {
            Some(k) => k,
            None => std::future::pending().await,
        }
    }
}

/// How long the demo waits for the key reader to notice it should stop before leaving it behind.
const JOIN_WAIT: Duration = Duration::from_millis(300);

impl Drop for Keys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Once the terminal is gone (closed window, killed tmux session), crossterm's read can spin on the
        // tty's end of file and never return, so a plain join would hang the demo forever, past SIGTERM. The
        // reader holds nothing that needs cleaning up: wait a moment, then leave it to the process's exit.
        if let Some(t) = self.thread.take() {
            let until = std::time::Instant::now() + JOIN_WAIT;
            while !t.is_finished() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The next key of `keys`, or never when there is no key reader: lets `select!` treat both alike.
pub async fn next(keys: &mut Option<Keys>) -> Key {
    match keys {
        Some(k) => k.next().await,
        None => std::future::pending().await,
    }
}

fn read_keys(tx: &UnboundedSender<Key>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(POLL) {
            Ok(true) => {}
            Ok(false) => continue,
            // The terminal went away: no more keys, signals still work.
            Err(_) => return,
        }
        let k = match event::read() {
            Ok(Event::Key(k)) => k,
            Ok(_) => continue,
            // The terminal went away: no more keys, signals still work.
            Err(_) => return,
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Stop,
            // '=' is '+' without Shift on most layouts; '_' is '-' with it.
            KeyCode::Char('+' | '=') => Key::AddConsumer,
            KeyCode::Char('-' | '_') => Key::RemoveConsumer,
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => Key::Stop,
            _ => continue,
        };
        if tx.send(key).is_err() {
            return;
        }
    }
}
