//! Downloads over https with retries for transient failures, a progress bar on a TTY, and the
//! rules that keep a network attacker from bending them: plain http only for loopback hosts or
//! bytes the lock pins, redirects never downgrade and stay on known hosts, certificate and
//! protocol errors are failures (never "unavailable"), and every download is capped in size
//! and time.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Size and time limits of one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Largest body accepted (`VMHARNESS_DOWNLOAD_MAX_BYTES`, default 2 GiB).
    pub max_bytes: u64,
    /// The whole download, all attempts included (`VMHARNESS_DOWNLOAD_TIMEOUT`, default 20 min).
    pub deadline: Duration,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            max_bytes: 2 << 30,
            deadline: Duration::from_secs(20 * 60),
        }
    }
}

/// What the caller knows about the bytes it asks for.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The lock pins the sha256 of the download: any transport may deliver it.
    pub pinned: bool,
    /// Hosts a redirect may lead to besides the URL's own.
    pub redirect_hosts: &'a [String],
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

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 8;

/// Downloads `url` into a temp file in `dir`, retrying transient failures per `retry`.
pub fn download(
    artifact: &str,
    url: &str,
    dir: &Path,
    retry: &RetryPolicy,
    progress: Progress,
    limits: &DownloadLimits,
    trust: Trust<'_>,
) -> Result<Download, ArtifactError> {
    let refused = |reason: String| ArtifactError::Download {
        artifact: artifact.to_string(),
        url: url.to_string(),
        reason,
    };
    let origin = UrlParts::parse(url).ok_or_else(|| refused("not an http(s) URL".into()))?;
    if origin.scheme == "http" && !trust.pinned && !origin.is_loopback() {
        return Err(refused(
            "plain http:// is refused for bytes guests.lock does not pin; use https://".into(),
        ));
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .timeout(limits.deadline)
        .redirects(0)
        .build();
    let started = Instant::now();
    let mut backoff = retry.first_backoff;
    let attempts = retry.attempts.max(1);
    for attempt in 1..=attempts {
        let request = Request {
            agent: &agent,
            artifact,
            origin: &origin,
            trust,
            limits,
            started,
        };
        let last = attempt == attempts || started.elapsed() + backoff >= limits.deadline;
        match request.attempt(url, dir, progress) {
            Ok(download) => return Ok(download),
            Err(Failure::Permanent(error)) => return Err(error),
            Err(Failure::Transient(reason, status)) if last => {
                return Err(match status {
                    Some(status) => ArtifactError::HttpStatus {
                        artifact: artifact.to_string(),
                        url: url.to_string(),
                        status,
                    },
                    None => ArtifactError::Unavailable {
                        artifact: artifact.to_string(),
                        reason: format!("GET {url} failed after {attempt} attempts: {reason}"),
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

/// The parts of an http(s) URL the redirect rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    /// `host[:port]`, lower-case.
    authority: String,
}

impl UrlParts {
    fn parse(url: &str) -> Option<UrlParts> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
        let authority = authority.rsplit('@').next()?.to_string();
        (!authority.is_empty()).then_some(UrlParts { scheme, authority })
    }

    fn host(&self) -> &str {
        if self.authority.starts_with('[') {
            return self.authority.split(']').next().map_or("", |h| &h[1..]);
        }
        self.authority.split(':').next().unwrap_or_default()
    }

    fn is_loopback(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Resolves a `Location` header against the URL it came from.
fn join_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{scheme}://{authority}{dir}/{location}")
}

struct Request<'a> {
    agent: &'a ureq::Agent,
    artifact: &'a str,
    origin: &'a UrlParts,
    trust: Trust<'a>,
    limits: &'a DownloadLimits,
    started: Instant,
}

impl Request<'_> {
    fn refuse(&self, url: &str, reason: String) -> Failure {
        Failure::Permanent(ArtifactError::Download {
            artifact: self.artifact.to_string(),
            url: url.to_string(),
            reason,
        })
    }

    /// Whether a redirect from `from` to `to` may be followed.
    fn check_redirect(&self, from: &UrlParts, to_url: &str) -> Result<(), Failure> {
        let Some(to) = UrlParts::parse(to_url) else {
            return Err(self.refuse(to_url, "redirect to a URL that is not http(s)".into()));
        };
        if from.scheme == "https" && to.scheme == "http" {
            return Err(self.refuse(
                to_url,
                format!(
                    "redirect from https://{} downgrades to plain http",
                    from.authority
                ),
            ));
        }
        if to.scheme == "http" && !self.trust.pinned && !to.is_loopback() {
            return Err(self.refuse(
                to_url,
                "redirect to plain http:// for unpinned bytes".into(),
            ));
        }
        let known = to.host() == self.origin.host()
            || self
                .trust
                .redirect_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(to.host()));
        if !known && !self.trust.pinned {
            return Err(self.refuse(
                to_url,
                format!(
                    "redirect to another host `{}` (add it to the recipe's `redirect_hosts` if it is expected)",
                    to.host()
                ),
            ));
        }
        Ok(())
    }

    /// Sends the request, following redirects under the rules.
    fn response(&self, url: &str) -> Result<ureq::Response, Failure> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let response = match self.agent.get(&current).call() {
                Ok(response) => response,
                Err(ureq::Error::Status(status, _))
                    if status >= 500 || status == 429 || status == 408 =>
                {
                    return Err(Failure::Transient(format!("HTTP {status}"), Some(status)))
                }
                Err(ureq::Error::Status(status, _)) => {
                    return Err(Failure::Permanent(ArtifactError::HttpStatus {
                        artifact: self.artifact.to_string(),
                        url: current,
                        status,
                    }))
                }
                Err(ureq::Error::Transport(transport)) => {
                    return Err(self.transport_failure(&current, &transport))
                }
            };
            if !(300..400).contains(&response.status()) {
                return Ok(response);
            }
            let Some(location) = response.header("Location") else {
                return Err(self.refuse(&current, "redirect without a Location".into()));
            };
            let next = join_location(&current, location);
            let from = UrlParts::parse(&current).unwrap_or_else(|| self.origin.clone());
            self.check_redirect(&from, &next)?;
            current = next;
        }
        Err(self.refuse(url, format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn transport_failure(&self, url: &str, transport: &ureq::Transport) -> Failure {
        // ureq's message names the URL and its causes already; the chain is searched for TLS.
        let reason = transport.to_string();
        let mut chain = reason.clone();
        let mut source = std::error::Error::source(transport);
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let lower = chain.to_ascii_lowercase();
        let tls = ["certificate", "tls", "handshake", "alert", "x509"]
            .iter()
            .any(|marker| lower.contains(marker));
        match transport.kind() {
            _ if tls => self.refuse(url, format!("TLS failure (not retried): {reason}")),
            ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
                self.refuse(url, format!("protocol error: {reason}"))
            }
            ureq::ErrorKind::Dns | ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                Failure::Permanent(ArtifactError::Unavailable {
                    artifact: self.artifact.to_string(),
                    reason: format!("GET {reason}"),
                })
            }
            _ if self.started.elapsed() >= self.limits.deadline => self.refuse(
                url,
                format!(
                    "not finished within {} ({reason})",
                    humantime::format_duration(self.limits.deadline)
                ),
            ),
            _ => Failure::Transient(reason, None),
        }
    }

    fn attempt(&self, url: &str, dir: &Path, progress: Progress) -> Result<Download, Failure> {
        let response = self.response(url)?;
        let length = response
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok());
        let max = self.limits.max_bytes;
        if length.is_some_and(|length| length > max) {
            return Err(self.refuse(
                url,
                format!(
                    "announced {} bytes, over the limit of {max}",
                    length.unwrap_or_default()
                ),
            ));
        }
        let bar = progress_bar(progress, length, url);
        let io_error = |action, e| Failure::Permanent(ArtifactError::io(action, dir, e));
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-download-")
            .tempfile_in(dir)
            .map_err(|e| io_error("create temp file in", e))?;
        let mut reader = response.into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut received = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(_) if self.started.elapsed() >= self.limits.deadline => {
                    return Err(self.refuse(
                        url,
                        format!(
                            "not finished within {}",
                            humantime::format_duration(self.limits.deadline)
                        ),
                    ))
                }
                Err(e) => return Err(Failure::Transient(format!("reading body: {e}"), None)),
            };
            if n == 0 {
                break;
            }
            received += n as u64;
            if received > max {
                return Err(self.refuse(url, format!("body exceeds the limit of {max} bytes")));
            }
            if self.started.elapsed() >= self.limits.deadline {
                return Err(self.refuse(
                    url,
                    format!(
                        "not finished within {} ({received} bytes so far)",
                        humantime::format_duration(self.limits.deadline)
                    ),
                ));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| io_error("write temp file in", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_join_like_a_browser() {
        let base = "https://a.example/x/y.zip?q=1";
        assert_eq!(join_location(base, "https://b/z"), "https://b/z");
        assert_eq!(join_location(base, "/z"), "https://a.example/z");
        assert_eq!(join_location(base, "z"), "https://a.example/x/z");
        assert_eq!(join_location(base, "//c/d"), "https://c/d");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:8/x",
            "http://localhost/x",
            "http://[::1]:80/",
        ] {
            assert!(UrlParts::parse(url).unwrap().is_loopback(), "{url}");
        }
        for url in [
            "http://10.0.0.1/x",
            "http://example.org/x",
            "http://127.0.0.1.evil/x",
        ] {
            assert!(!UrlParts::parse(url).unwrap().is_loopback(), "{url}");
        }
    }
}
