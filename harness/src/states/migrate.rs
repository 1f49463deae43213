//! Saving and restoring over QMP. QEMU's default migration bandwidth (128 MiB/s) makes a save
//! 2–4× slower even with the VM stopped, so it is raised first; a restore comes up paused (the
//! source was stopped) and is continued once it has loaded.
//!
//! `template` saves with `x-ignore-shared`: the guest RAM, a shared file-backed memory backend,
//! stays out of the stream, which is then device state only (about 0.5 MB) and goes through
//! `exec:cat` on every release. A restore sets the capability too (the stream says which RAM
//! blocks were left out).
//!
//! Every restore starts QEMU with `-incoming defer` and names the stream in `migrate-incoming`
//! (`exec:cat` included), so a QEMU started before its case ([`crate::run`]'s spare) waits
//! without reading any state, and its command line is the same for every method.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Method, StateError};
use crate::qemu::Qmp;

/// Bytes per second: as fast as the host can write.
const BANDWIDTH: u64 = 1 << 40;
/// How often migration status is polled.
const POLL: Duration = Duration::from_millis(2);

/// Connects to QEMU's QMP socket at `socket`, waiting for QEMU to create it until `deadline`.
pub(crate) fn wait_for_qmp(socket: &Path, deadline: Instant) -> Result<Qmp, StateError> {
    loop {
        match Qmp::connect(socket) {
            Ok(qmp) => return Ok(qmp),
            Err(err) if Instant::now() >= deadline => return Err(err.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// The `-incoming` argument of a restore: `defer`, the stream follows in [`restore`].
pub(crate) fn incoming() -> &'static str {
    "defer"
}

/// The `migrate-incoming` URI that loads `state` saved with `method`.
fn incoming_uri(method: Method, state: &Path) -> String {
    match method {
        Method::Exec | Method::Template => format!("exec:cat {}", shell_quote(state)),
        Method::File | Method::MappedRam => format!("file:{}", state.display()),
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn capabilities(qmp: &mut Qmp, method: Method) -> Result<(), StateError> {
    let capability = match method {
        Method::MappedRam => "mapped-ram",
        Method::Template => "x-ignore-shared",
        Method::Exec | Method::File => return Ok(()),
    };
    qmp.execute(
        "migrate-set-capabilities",
        json!({ "capabilities": [{ "capability": capability, "state": true }] }),
    )?;
    Ok(())
}

/// Saves the (stopped) VM's state into `state` and waits until QEMU says it is complete.
pub(crate) fn save(
    qmp: &mut Qmp,
    method: Method,
    state: &Path,
    limit: Duration,
) -> Result<(), StateError> {
    let deadline = Instant::now() + limit;
    qmp.execute(
        "migrate-set-parameters",
        json!({ "max-bandwidth": BANDWIDTH }),
    )?;
    capabilities(qmp, method)?;
    let uri = match method {
        Method::Exec | Method::Template => format!("exec:cat > {}", shell_quote(state)),
        Method::File | Method::MappedRam => format!("file:{}", state.display()),
    };
    qmp.execute("migrate", json!({ "uri": uri }))?;
    loop {
        let info = qmp.execute("query-migrate", json!({}))?;
        match status(&info) {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(StateError::Migration {
                    phase: "saving",
                    status: status(&info).to_string(),
                    detail: info
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
            }
            _ if Instant::now() >= deadline => {
                return Err(StateError::Timeout {
                    phase: "saving",
                    after: limit,
                })
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// Loads `state` into a QEMU started with [`incoming`] and continues the VM.
pub(crate) fn restore(
    qmp: &mut Qmp,
    method: Method,
    state: &Path,
    limit: Duration,
) -> Result<(), StateError> {
    let deadline = Instant::now() + limit;
    capabilities(qmp, method)?;
    let uri = incoming_uri(method, state);
    qmp.execute("migrate-incoming", json!({ "uri": uri }))?;
    loop {
        let info = qmp.execute("query-status", json!({}))?;
        match status(&info) {
            "inmigrate" if Instant::now() >= deadline => {
                return Err(StateError::Timeout {
                    phase: "restoring",
                    after: limit,
                })
            }
            "inmigrate" => std::thread::sleep(POLL),
            "paused" | "postmigrate" | "prelaunch" => break,
            "running" => return Ok(()),
            other => {
                return Err(StateError::Migration {
                    phase: "restoring",
                    status: other.to_string(),
                    detail: None,
                })
            }
        }
    }
    qmp.execute("cont", json!({}))?;
    Ok(())
}

fn status(info: &Value) -> &str {
    info.get("status").and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths_are_quoted_for_the_shell() {
        let path = Path::new("/tmp/it's here/state");
        let uri = incoming_uri(Method::Exec, path);
        assert_eq!(uri, r"exec:cat '/tmp/it'\''s here/state'");
        let words = shell_words::split(uri.strip_prefix("exec:").unwrap()).unwrap();
        assert_eq!(words, ["cat", "/tmp/it's here/state"]);
        assert_eq!(
            incoming_uri(Method::MappedRam, path),
            "file:/tmp/it's here/state"
        );
    }
}
