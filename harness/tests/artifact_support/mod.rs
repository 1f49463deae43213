//! Shared helpers for the artifact tests: a tiny HTTP server, archive builders, recipe dirs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An HTTP/1.1 server on 127.0.0.1 that serves fixed bodies and counts requests.
pub struct Server {
    pub addr: String,
    state: Arc<ServerState>,
}

struct ServerState {
    bodies: Mutex<HashMap<String, Vec<u8>>>,
    /// Path -> Location of a 302 answer.
    redirects: Mutex<HashMap<String, String>>,
    /// Paths answered with a body that never ends (no Content-Length), with a pause per chunk.
    endless: Mutex<HashMap<String, std::time::Duration>>,
    /// Number of upcoming requests answered with 503.
    failures: AtomicUsize,
    requests: AtomicUsize,
}

impl Server {
    pub fn start() -> Server {
        Server::start_at("127.0.0.1")
    }

    /// A server on another loopback address (`127.0.0.2`): another host, without DNS.
    pub fn start_at(ip: &str) -> Server {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback address");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(ServerState {
            bodies: Mutex::new(HashMap::new()),
            redirects: Mutex::new(HashMap::new()),
            endless: Mutex::new(HashMap::new()),
            failures: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Server { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.state
            .bodies
            .lock()
            .unwrap()
            .insert(format!("/{path}"), body);
    }

    /// Answers `path` with `302 Found` to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .redirects
            .lock()
            .unwrap()
            .insert(format!("/{path}"), location.to_string());
    }

    /// Answers `path` with a body that never ends, pausing `pause` between 64 KiB chunks.
    pub fn endless(&self, path: &str, pause: std::time::Duration) {
        self.state
            .endless
            .lock()
            .unwrap()
            .insert(format!("/{path}"), pause);
    }

    pub fn fail_next(&self, count: usize) {
        self.state.failures.store(count, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, state: &ServerState) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let failing = state
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut stream = reader.into_inner();
    if let Some(location) = state.redirects.lock().unwrap().get(&path).cloned() {
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        return;
    }
    let endless = state.endless.lock().unwrap().get(&path).copied();
    if let Some(pause) = endless {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        while stream.write_all(&chunk).is_ok() {
            std::thread::sleep(pause);
        }
        return;
    }
    let body = state.bodies.lock().unwrap().get(&path).cloned();
    let (status, body) = match body {
        _ if failing => ("503 Service Unavailable", b"busy".to_vec()),
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"no such file".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// A zip with the given (name, contents) files.
pub fn zip_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, contents) in files {
        writer.start_file(*name, options).expect("zip start_file");
        writer.write_all(contents).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// Writes `text` to `dir/name`, creating parents.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    vmharness_digest::to_hex(&sha2::Sha256::digest(bytes))
}

/// Lines in a counter file (one line per recorded run), 0 if missing.
pub fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// A guests dir with a counting command recipe `counted` that copies `input.txt` to `out.txt`
/// and appends a line to `<root>/counter` on every run. Returns (guests dir, counter path).
pub fn counting_guests(root: &Path, extra_script: &str) -> (PathBuf, PathBuf) {
    let guests = root.join("guests");
    let counter = root.join("counter");
    write(&guests, "input.txt", "first\n");
    write(
        &guests,
        "build.sh",
        &format!(
            "set -e\necho run >> '{counter}'\n{extra_script}\ncp input.txt \"$1/out.txt\"\n",
            counter = counter.display()
        ),
    );
    write(
        &guests,
        "counted.toml",
        r#"[counted]
kind = "command"
inputs = ["input.txt", "build.sh"]
command = ["sh", "build.sh", "{out}"]
tools = [["sh", "-c", "echo tool 1.0"]]
outputs = ["out.txt"]
"#,
    );
    (guests, counter)
}

/// Every file below `dir` (recursively), for "nothing was left behind" checks.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A guests dir with one `url` recipe `fetched` for `url` (plain download named `blob.bin`).
pub fn url_guests(root: &Path, url: &str, extra: &str) -> PathBuf {
    let guests = root.join("guests");
    write(
        &guests,
        "fetched.toml",
        &format!("[fetched]\nkind = \"url\"\nurl = \"{url}\"\nfile = \"blob.bin\"\n{extra}"),
    );
    guests
}

/// Resolve options for tests: this cache, this lock mode, quick retries.
pub fn options(
    cache: &Path,
    mode: vmharness::artifact::LockMode,
) -> vmharness::artifact::ResolveOptions {
    let mut options = vmharness::artifact::ResolveOptions::new(cache);
    options.lock_mode = mode;
    options.retry = vmharness::artifact::RetryPolicy {
        attempts: 3,
        first_backoff: std::time::Duration::from_millis(50),
    };
    options
}
