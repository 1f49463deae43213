//! Downloads over https with retries for transient failures, a progress bar on a TTY, and the
//! rules that keep a network attacker from bending them: plain http only for loopback hosts or
//! bytes the lock pins, redirects never downgrade and stay on known hosts (as the client's own
//! URL parser reads them; credentials and backslashes refused), certificate and
//! protocol errors are failures (never "unavailable"), and every download is capped in size
//! and time.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vmharness_digest::Sha256;

use super::error::ArtifactError;

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
pub(crate) struct Trust<'a> {
    /// The lock pins the sha256 of the download: any transport may deliver it.
    pub pinned: bool,
    /// Hosts a redirect may lead to besides the URL's own.
    pub redirect_hosts: &'a [String],
}

/// A finished download: the temp file holding it and its sha256.
#[derive(Debug)]
pub(crate) struct Download {
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
pub(crate) fn download(
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
    let origin = parse(url).map_err(refused)?;
    if origin.scheme() == "http" && !trust.pinned && !is_loopback(&origin) {
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
        match request.attempt(&origin, dir, progress) {
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

/// Parses an http(s) URL the way the HTTP client will (ureq parses with the `url` crate), so
/// the host the rules check is the host it connects to. Refuses what parsers disagree on:
/// backslashes (WHATWG reads `\` as `/`, others keep it), and credentials in the URL (`a@b`:
/// which side is the host depends on the parser).
fn parse(text: &str) -> Result<url::Url, String> {
    if text.contains('\\') {
        return Err("a URL with a backslash is refused (parsers disagree on its host)".into());
    }
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    check_parsed(url)
}

/// Checks a download mirror prefix (`VMHARNESS_ARTIFACT_MIRROR`): an absolute http(s) URL
/// without credentials, query or fragment, since `https://host/path` is fetched from
/// `<prefix>/host/path`. Returns it without a trailing `/`, or what is wrong.
pub fn mirror_prefix(text: &str) -> Result<String, String> {
    let url = parse(text)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a mirror prefix cannot have a query or fragment".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn check_parsed(url: url::Url) -> Result<url::Url, String> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("not an http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL with credentials (`user@host`) is refused".into());
    }
    if url.host().is_none() {
        return Err("a URL without a host".into());
    }
    Ok(url)
}

/// The host as compared by the redirect rules: lower-case, IPv6 in brackets.
fn host_of(url: &url::Url) -> String {
    url.host_str().unwrap_or_default().to_ascii_lowercase()
}

/// `host[:port]` for messages.
fn authority_of(url: &url::Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", host_of(url)),
        None => host_of(url),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Resolves a `Location` header against the URL it came from, as the client would, refusing
/// what [`parse`] refuses.
fn join_location(base: &url::Url, location: &str) -> Result<url::Url, String> {
    if location.contains('\\') {
        return Err("a redirect with a backslash is refused (parsers disagree on its host)".into());
    }
    let joined = base
        .join(location)
        .map_err(|e| format!("redirect to an invalid URL: {e}"))?;
    check_parsed(joined)
}

struct Request<'a> {
    agent: &'a ureq::Agent,
    artifact: &'a str,
    origin: &'a url::Url,
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
    fn check_redirect(&self, from: &url::Url, to: &url::Url) -> Result<(), Failure> {
        if from.scheme() == "https" && to.scheme() == "http" {
            return Err(self.refuse(
                to.as_str(),
                format!(
                    "redirect from https://{} downgrades to plain http",
                    authority_of(from)
                ),
            ));
        }
        if to.scheme() == "http" && !self.trust.pinned && !is_loopback(to) {
            return Err(self.refuse(
                to.as_str(),
                "redirect to plain http:// for unpinned bytes".into(),
            ));
        }
        let host = host_of(to);
        let known = host == host_of(self.origin)
            || self
                .trust
                .redirect_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&host));
        if !known && !self.trust.pinned {
            return Err(self.refuse(
                to.as_str(),
                format!(
                    "redirect to another host `{host}` (add it to the recipe's `redirect_hosts` if it is expected)"
                ),
            ));
        }
        Ok(())
    }

    /// Sends the request, following redirects under the rules.
    fn response(&self, url: &url::Url) -> Result<ureq::Response, Failure> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            // The checked, serialized URL: ureq parses it back to the same host.
            let response = match self.agent.get(current.as_str()).call() {
                Ok(response) => response,
                Err(ureq::Error::Status(status, _))
                    if status >= 500 || status == 429 || status == 408 =>
                {
                    return Err(Failure::Transient(format!("HTTP {status}"), Some(status)))
                }
                Err(ureq::Error::Status(status, _)) => {
                    return Err(Failure::Permanent(ArtifactError::HttpStatus {
                        artifact: self.artifact.to_string(),
                        url: current.to_string(),
                        status,
                    }))
                }
                Err(ureq::Error::Transport(transport)) => {
                    return Err(self.transport_failure(current.as_str(), &transport))
                }
            };
            if !(300..400).contains(&response.status()) {
                return Ok(response);
            }
            let Some(location) = response.header("Location") else {
                return Err(self.refuse(current.as_str(), "redirect without a Location".into()));
            };
            let next = join_location(&current, location)
                .map_err(|reason| self.refuse(location, reason))?;
            self.check_redirect(&current, &next)?;
            current = next;
        }
        Err(self.refuse(url.as_str(), format!("more than {MAX_REDIRECTS} redirects")))
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

    fn attempt(
        &self,
        origin: &url::Url,
        dir: &Path,
        progress: Progress,
    ) -> Result<Download, Failure> {
        let response = self.response(origin)?;
        let url = origin.as_str();
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
            sha256: hasher.finish_hex(),
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

    fn join(base: &str, location: &str) -> Result<String, String> {
        join_location(&parse(base).unwrap(), location).map(String::from)
    }

    #[test]
    fn locations_join_like_a_browser() {
        let base = "https://a.example/x/y.zip?q=1";
        assert_eq!(join(base, "https://b/z").unwrap(), "https://b/z");
        assert_eq!(join(base, "/z").unwrap(), "https://a.example/z");
        assert_eq!(join(base, "z").unwrap(), "https://a.example/x/z");
        assert_eq!(join(base, "//c/d").unwrap(), "https://c/d");
        for refused in ["\\\\c/d", "/\\c/d", "https://u:p@b/z", "ftp://b/z"] {
            assert!(join(base, refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised_as_the_client_reads_them() {
        for url in [
            "http://127.0.0.1:8/x",
            "http://localhost/x",
            "http://LOCALHOST/x",
            "http://[::1]:80/",
            "http://%31%32%37.0.0.1/x",
            "http://2130706433/x",
            "http://0x7f.0.0.1/x",
            "http://127.0.0.1./x",
        ] {
            assert!(is_loopback(&parse(url).unwrap()), "{url}");
        }
        for url in [
            "http://10.0.0.1/x",
            "http://example.org/x",
            "http://127.0.0.1.evil/x",
            "http://[::2]/x",
        ] {
            assert!(!is_loopback(&parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn ambiguous_urls_are_refused() {
        for url in [
            "http://localhost:1\\@127.0.0.1:2/x",
            "http://evil.example\\@github.com/x",
            "http://127.0.0.1:1@evil.example/x",
            "http://user@127.0.0.1/x",
            "http://:pw@127.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }
}
