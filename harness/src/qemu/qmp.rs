//! A QMP client on QEMU's unix socket: connect lazily, negotiate capabilities, run commands.
//! Events are skipped; every read has a deadline, so a wedged QEMU cannot hang the harness.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// How long one QMP reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached or read.
    #[error("QMP socket {path}")]
    Io {
        /// The socket.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU answered with an error or something that is not QMP.
    #[error("QMP `{command}`: {message}")]
    Reply {
        /// The command.
        command: String,
        /// QEMU's error, or what was wrong with the reply.
        message: String,
    },
}

/// A connected, negotiated QMP session.
pub(crate) struct Qmp {
    path: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `path`, reads the greeting and enters command mode.
    pub(crate) fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let name = path.display().to_string();
        let io = |source| QmpError::Io {
            path: name.clone(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Qmp {
            path: name,
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message("greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Reply {
                command: "greeting".into(),
                message: format!("not a QMP greeting: {greeting}"),
            });
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub(crate) fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let request = json!({ "execute": command, "arguments": arguments });
        let io = |source| QmpError::Io {
            path: self.path.clone(),
            source,
        };
        writeln!(self.writer, "{request}").map_err(io)?;
        loop {
            let message = self.read_message(command)?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(QmpError::Reply {
                    command: command.into(),
                    message: error
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("an error")
                        .to_string(),
                });
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
        }
    }

    /// Runs a human-monitor command (`info registers`) and returns its text.
    pub(crate) fn human(&mut self, command_line: &str) -> Result<String, QmpError> {
        let value = self.execute(
            "human-monitor-command",
            json!({ "command-line": command_line }),
        )?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    fn read_message(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        let read = self
            .reader
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        if read == 0 {
            return Err(QmpError::Reply {
                command: command.into(),
                message: "QEMU closed the socket".into(),
            });
        }
        serde_json::from_str(&line).map_err(|err| QmpError::Reply {
            command: command.into(),
            message: format!("not JSON ({err}): {}", line.trim()),
        })
    }
}
