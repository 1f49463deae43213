//! A QMP client on QEMU's unix socket: connect lazily, negotiate capabilities, run commands.
//! Events are skipped; the connect and every read have a deadline, so a wedged or stopped QEMU
//! cannot hang the harness.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Connects to the unix socket `path`, giving up after `limit`. A QEMU that is stopped or
/// wedged never accepts; once its listen backlog is full, a blocking `connect` would wait
/// forever, so the socket is non-blocking (`EAGAIN` while the backlog is full) until connected.
fn connect_within(path: &Path, limit: Duration) -> std::io::Result<UnixStream> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let address = UnixAddr::new(path)?;
    let deadline = Instant::now() + limit;
    loop {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        match connect(fd.as_raw_fd(), &address) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "QEMU did not accept a connection within {} s",
                        limit.as_secs_f64()
                    ),
                ))
            }
            Err(errno) => return Err(errno.into()),
        }
    }
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
        let stream = connect_within(path, REPLY_TIMEOUT).map_err(io)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };

    use super::*;

    /// `Qmp::connect(path)` on a thread; its result, or `None` if it has not returned after a
    /// minute (the connect and the greeting have 3 s each).
    fn connect_returns(path: &Path) -> Option<Result<(), String>> {
        let (sender, receiver) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let result = Qmp::connect(&path).map(drop).map_err(|err| {
                let cause = std::error::Error::source(&err).map(ToString::to_string);
                format!("{err}: {}", cause.unwrap_or_default())
            });
            let _ = sender.send(result);
        });
        receiver.recv_timeout(Duration::from_secs(60)).ok()
    }

    /// A QEMU that is stopped never accepts: with its listen backlog full, connecting fails
    /// with a timeout instead of blocking forever (it used to block, which hung a case whose
    /// spare QEMU was stopped).
    #[test]
    fn a_socket_that_never_accepts_fails_the_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        // Fill the backlog: connections nobody accepts.
        let mut queued = Vec::new();
        while let Ok(stream) = connect_within(&path, Duration::ZERO) {
            queued.push(stream);
            assert!(queued.len() < 64, "the backlog never filled");
        }
        let result = connect_returns(&path).expect("the connect returned");
        let err = result.unwrap_err();
        assert!(err.contains("did not accept a connection"), "{err}");
    }

    /// A QEMU that accepts but never greets fails the connect at the greeting's deadline.
    #[test]
    fn a_socket_that_never_greets_fails_the_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
        let result = connect_returns(&path).expect("the connect returned");
        assert!(result.is_err());
        drop(accepted.join());
    }

    /// A missing socket fails at once, with the OS's reason.
    #[test]
    fn a_missing_socket_fails_the_connect() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_within(&dir.path().join("none.sock"), REPLY_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
