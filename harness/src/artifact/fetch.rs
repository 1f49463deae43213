//! Downloads over http(s) with retries for transient failures and a progress bar on a TTY.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ArtifactError;

/// How often and how patiently transient network failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// Whether downloads draw a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// On stderr, only if stderr is a terminal.
    #[default]
    Auto,
    /// Never.
    Hidden,
}

/// A finished download: the temp file holding it and its sha256.
#[derive(Debug)]
pub struct Download {
    /// The downloaded bytes, in a temp file next to where they will be kept.
    pub file: tempfile::NamedTempFile,
    /// Hex sha256 of the bytes.
    pub sha256: String,
}

enum Failure {
    /// Worth another attempt (connection trouble, 5xx, 429, cut-off body).
    Transient(String, Option<u16>),
    /// Retrying will not help.
    Permanent(ArtifactError),
}

/// Downloads `url` into a temp file in `dir`, retrying transient failures per `retry`.
pub fn download(
    artifact: &str,
    url: &str,
    dir: &Path,
    retry: &RetryPolicy,
    progress: Progress,
) -> Result<Download, ArtifactError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build();
    let mut backoff = retry.first_backoff;
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        match attempt_download(&agent, artifact, url, dir, progress) {
            Ok(download) => return Ok(download),
            Err(Failure::Permanent(error)) => return Err(error),
            Err(Failure::Transient(reason, status)) if attempt == attempts => {
                return Err(match status {
                    Some(status) => ArtifactError::HttpStatus {
                        artifact: artifact.to_string(),
                        url: url.to_string(),
                        status,
                    },
                    None => ArtifactError::Unavailable {
                        artifact: artifact.to_string(),
                        reason: format!("GET {url} failed after {attempts} attempts: {reason}"),
                    },
                })
            }
            Err(Failure::Transient(..)) => {
                std::thread::sleep(backoff);
                backoff = backoff.saturating_mul(2);
            }
        }
    }
    unreachable!("the last attempt always returns")
}

fn attempt_download(
    agent: &ureq::Agent,
    artifact: &str,
    url: &str,
    dir: &Path,
    progress: Progress,
) -> Result<Download, Failure> {
    let response = match agent.get(url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(status, _)) if status >= 500 || status == 429 || status == 408 => {
            return Err(Failure::Transient(format!("HTTP {status}"), Some(status)))
        }
        Err(ureq::Error::Status(status, _)) => {
            return Err(Failure::Permanent(ArtifactError::HttpStatus {
                artifact: artifact.to_string(),
                url: url.to_string(),
                status,
            }))
        }
        Err(ureq::Error::Transport(transport)) => {
            let reason = transport.to_string();
            return Err(match transport.kind() {
                ureq::ErrorKind::Dns
                | ureq::ErrorKind::InvalidUrl
                | ureq::ErrorKind::UnknownScheme => {
                    Failure::Permanent(ArtifactError::Unavailable {
                        artifact: artifact.to_string(),
                        reason: format!("GET {url}: {reason}"),
                    })
                }
                _ => Failure::Transient(reason, None),
            });
        }
    };
    let length = response
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = progress_bar(progress, length, url);
    let io_error = |action, e| Failure::Permanent(ArtifactError::io(action, dir, e));
    let mut file =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io_error("create temp file in", e))?;
    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => return Err(Failure::Transient(format!("reading body: {e}"), None)),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| io_error("write temp file in", e))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if length.is_some_and(|expected| expected != received) {
        return Err(Failure::Transient(
            format!(
                "body cut off at {received} of {} bytes",
                length.unwrap_or_default()
            ),
            None,
        ));
    }
    Ok(Download {
        file,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn progress_bar(progress: Progress, length: Option<u64>, url: &str) -> indicatif::ProgressBar {
    if progress == Progress::Hidden || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match length {
        Some(length) => indicatif::ProgressBar::new(length),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    bar
}
