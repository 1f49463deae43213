//! The terminal during `qemu`: raw mode so that keys reach the guest, restored on
//! every way out (normal return, panic, SIGINT/SIGTERM/SIGHUP, QEMU dying).

use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Context;
use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The escape key that ends an interactive session: Ctrl-] (as in telnet).
pub const ESCAPE: u8 = 0x1d;

/// The terminal settings to restore, shared with the panic hook and the signal thread.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Stdin in raw mode; the saved settings come back when this is dropped.
pub struct RawMode(());

impl RawMode {
    /// Puts stdin into raw mode if it is a terminal (`None` otherwise) and arranges that a
    /// panic or a terminating signal restores it first.
    pub fn enter() -> anyhow::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin).context("reading the terminal settings of stdin")?;
        let mut raw = saved.clone();
        // Like cfmakeraw, but output processing stays on so "\n" still returns the carriage.
        raw.input_flags &= !(InputFlags::IGNBRK
            | InputFlags::BRKINT
            | InputFlags::PARMRK
            | InputFlags::ISTRIP
            | InputFlags::INLCR
            | InputFlags::IGNCR
            | InputFlags::ICRNL
            | InputFlags::IXON);
        raw.local_flags &= !(LocalFlags::ECHO
            | LocalFlags::ECHONL
            | LocalFlags::ICANON
            | LocalFlags::ISIG
            | LocalFlags::IEXTEN);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        *SAVED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(saved);
        install_restorers()?;
        termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &raw)
            .context("switching the terminal to raw mode")?;
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores the saved terminal settings, once; later calls do nothing.
pub fn restore() {
    let saved = SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &saved);
    }
}

/// A panic hook and a signal thread that restore the terminal before anything else happens.
fn install_restorers() -> anyhow::Result<()> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    // This handler ends the process; the library's own would race it.
    vmharness::run::frontend_handles_signals();
    std::thread::Builder::new()
        .name("terminal-restore".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                restore();
                vmharness::run::remove_active_temp_dirs();
                eprintln!(
                    "\n[vmharness] caught signal {signal}: QEMU is stopped, terminal restored"
                );
                // Exiting ends the spawner thread, so QEMU gets its parent-death SIGKILL.
                std::process::exit(128 + signal);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}
