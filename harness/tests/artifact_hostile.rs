//! Downloads an attacker on the network cannot bend, and cache faults that are reported rather
//! than hidden: real servers on 127.0.0.1 (plain HTTP, and `openssl s_server` with a
//! self-signed certificate), real files in a real cache.

mod artifact_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use artifact_support::{
    counting_guests, files_below, options, sha256_hex, url_guests, write, Server,
};
use vmharness::artifact::{ArtifactError, Catalog, LockMode, Network, Origin, ResolveOptions};

/// Files in the object store (downloads), partial ones included.
fn objects(cache: &Path) -> Vec<PathBuf> {
    files_below(&cache.join("objects"))
}

fn resolve_err(guests: &Path, opts: &ResolveOptions) -> ArtifactError {
    Catalog::load(guests)
        .unwrap()
        .resolve("fetched", opts)
        .expect_err("must fail")
}

/// A TLS server with a self-signed certificate, killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path) -> TlsServer {
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (package openssl; `cargo xtask setup` installs it)");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_certificate_error_is_a_failure_not_unavailability() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TlsServer::start(tmp.path());
    let url = format!("https://127.0.0.1:{}/blob.bin", server.port);
    let guests = url_guests(tmp.path(), &url, "");
    let cache = tmp.path().join("cache");
    for mode in [LockMode::Lenient, LockMode::Locked] {
        let err = resolve_err(&guests, &options(&cache, mode));
        assert!(
            !err.is_unavailable(),
            "a TLS error must not read as unavailable: {err}"
        );
        assert!(
            matches!(err, ArtifactError::Download { ref reason, .. } if reason.contains("TLS")),
            "{err}"
        );
    }
    assert!(objects(&cache).is_empty(), "{:?}", objects(&cache));
}

#[test]
fn redirects_to_other_hosts_and_plain_http_are_refused_unless_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = Server::start();
    // 127.0.0.1 -> 127.0.0.2: another host, as an attacker's redirect would be.
    let elsewhere = Server::start_at("127.0.0.2");
    elsewhere.put("blob.bin", b"payload".to_vec());
    origin.redirect("blob.bin", &elsewhere.url("blob.bin"));
    let guests = url_guests(tmp.path(), &origin.url("blob.bin"), "");
    let cache = tmp.path().join("cache");
    let err = resolve_err(&guests, &options(&cache, LockMode::Lenient));
    assert!(
        matches!(err, ArtifactError::Download { ref reason, .. } if reason.contains("another host `127.0.0.2`")),
        "{err}"
    );
    assert_eq!(elsewhere.requests(), 0, "the redirect must not be followed");
    assert!(objects(&cache).is_empty());

    // A host the recipe names is fine, and so is any host for bytes the lock pins.
    let allowed = url_guests(
        &tmp.path().join("allowed"),
        &origin.url("blob.bin"),
        "redirect_hosts = [\"127.0.0.2\"]\n",
    );
    let resolved = Catalog::load(&allowed)
        .unwrap()
        .resolve("fetched", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert_eq!(
        std::fs::read(&resolved.files["blob.bin"]).unwrap(),
        b"payload"
    );

    // Plain http to a host that is not loopback is refused before any connection is made.
    for url in [
        "http://192.0.2.1/blob.bin",
        "http://example.invalid/blob.bin",
    ] {
        let guests = url_guests(&tmp.path().join("plain"), url, "");
        let err = resolve_err(&guests, &options(&cache, LockMode::Lenient));
        assert!(
            matches!(err, ArtifactError::Download { ref reason, .. } if reason.contains("plain http")),
            "{url}: {err}"
        );
    }
}

#[test]
fn endless_and_slow_bodies_are_cut_off_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.endless("fast.bin", Duration::ZERO);
    server.endless("slow.bin", Duration::from_millis(50));
    let cache = tmp.path().join("cache");

    let mut opts = options(&cache, LockMode::Lenient);
    opts.download.max_bytes = 1 << 20;
    let guests = url_guests(&tmp.path().join("fast"), &server.url("fast.bin"), "");
    let err = resolve_err(&guests, &opts);
    assert!(
        matches!(err, ArtifactError::Download { ref reason, .. } if reason.contains("exceeds the limit")),
        "{err}"
    );
    assert!(objects(&cache).is_empty(), "{:?}", objects(&cache));

    let mut opts = options(&cache, LockMode::Lenient);
    opts.download.deadline = Duration::from_millis(800);
    let guests = url_guests(&tmp.path().join("slow"), &server.url("slow.bin"), "");
    let started = std::time::Instant::now();
    let err = resolve_err(&guests, &opts);
    assert!(
        matches!(err, ArtifactError::Download { ref reason, .. } if reason.contains("not finished within")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded in time"
    );
    assert!(objects(&cache).is_empty(), "{:?}", objects(&cache));
}

#[test]
fn stale_partial_downloads_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.put("blob.bin", b"payload".to_vec());
    let cache = tmp.path().join("cache");
    let stale = write(&cache.join("objects"), ".tmp-download-dead", "partial");
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = write(&cache.join("objects"), ".tmp-download-live", "in progress");
    let mut opts = options(&cache, LockMode::Lenient);
    opts.download.deadline = Duration::from_secs(60);
    let guests = url_guests(tmp.path(), &server.url("blob.bin"), "");
    Catalog::load(&guests)
        .unwrap()
        .resolve("fetched", &opts)
        .unwrap();
    assert!(
        !stale.exists(),
        "a partial file older than the deadline is swept"
    );
    assert!(
        fresh.exists(),
        "a download that may still be running is left alone"
    );
}

#[test]
fn offline_with_a_corrupt_cache_entry_is_an_infrastructure_error_and_the_file_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.put("blob.bin", b"payload".to_vec());
    let guests = url_guests(tmp.path(), &server.url("blob.bin"), "");
    let cache = tmp.path().join("cache");
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("fetched", &options(&cache, LockMode::Lenient))
        .unwrap();
    let file = resolved.files["blob.bin"].clone();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "cache files are read-only");
    let object = cache.join("objects").join(sha256_hex(b"payload"));
    assert_eq!(
        std::fs::metadata(&object).unwrap().permissions().mode() & 0o777,
        0o444
    );

    // Corrupt both the materialized file and the download it came from.
    for path in [&file, &object] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(path, b"bit rot").unwrap();
    }
    let mut offline = options(&cache, LockMode::Lenient);
    offline.network = Network::Offline;
    let err = resolve_err(&guests, &offline);
    assert!(!err.is_unavailable(), "must not end as 'ignored': {err}");
    let ArtifactError::CorruptCache(corruption) = &err else {
        panic!("expected CorruptCache: {err}");
    };
    let (named, expected, actual, moved_to) = (
        &corruption.file,
        &corruption.expected,
        &corruption.actual,
        &corruption.moved_to,
    );
    assert_eq!(expected, &sha256_hex(b"payload"));
    assert_eq!(actual, &sha256_hex(b"bit rot"));
    assert!(named.ends_with("blob.bin") || named == &object, "{err}");
    assert!(moved_to.starts_with(cache.join("quarantine")), "{err}");
    let kept: Vec<PathBuf> = files_below(&cache.join("quarantine"));
    assert!(
        kept.iter().any(|p| std::fs::read(p).unwrap() == b"bit rot"),
        "the bad bytes are kept as evidence: {kept:?}"
    );

    // Online again, it is fetched anew.
    let again = Catalog::load(&guests)
        .unwrap()
        .resolve("fetched", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert_eq!(std::fs::read(&again.files["blob.bin"]).unwrap(), b"payload");
}

#[test]
fn a_corrupt_build_is_moved_aside_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, counter) = counting_guests(tmp.path(), "");
    let cache = tmp.path().join("cache");
    let opts = options(&cache, LockMode::Lenient);
    let first = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    let out = first.files["out.txt"].clone();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&out, "tampered\n").unwrap();
    let again = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    assert_eq!(again.origin, Origin::Built);
    assert_eq!(
        std::fs::read_to_string(&again.files["out.txt"]).unwrap(),
        "first\n"
    );
    assert_eq!(artifact_support::count_lines(&counter), 2);
    assert!(files_below(&cache.join("quarantine"))
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t == "tampered\n")));
}

#[test]
fn import_verifies_against_the_lock_or_pins_and_the_mirror_prefix_rewrites_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = url_guests(
        tmp.path(),
        "https://downloads.example.invalid/releases/blob.bin",
        "",
    );
    let cache = tmp.path().join("cache");
    let good = write(tmp.path(), "good.bin", "payload");
    let wrong = write(tmp.path(), "wrong.bin", "something else");

    // No lock entry: strict CI refuses, the default pins on import.
    let catalog = Catalog::load(&guests).unwrap();
    let err = catalog
        .import("fetched", &good, &options(&cache, LockMode::Strict))
        .unwrap_err();
    assert!(matches!(err, ArtifactError::NotLocked { .. }), "{err}");
    let imported = catalog
        .import("fetched", &good, &options(&cache, LockMode::Lenient))
        .unwrap();
    assert_eq!(
        std::fs::read(&imported.files["blob.bin"]).unwrap(),
        b"payload"
    );
    assert_eq!(
        imported.entry.download.as_deref(),
        Some(sha256_hex(b"payload").as_str())
    );
    let mut lock = catalog.lock().clone();
    lock.insert("fetched", imported.entry.clone());
    lock.save().unwrap();

    // Pinned now: offline CI resolves from the imported file; a wrong file is refused.
    let catalog = Catalog::load(&guests).unwrap();
    let mut offline = options(&cache, LockMode::Locked);
    offline.network = Network::Offline;
    let resolved = catalog.resolve("fetched", &offline).unwrap();
    assert_eq!(
        std::fs::read(&resolved.files["blob.bin"]).unwrap(),
        b"payload"
    );
    let err = catalog
        .import("fetched", &wrong, &options(&cache, LockMode::Locked))
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::Mismatch { ref actual, .. } if actual == &sha256_hex(b"something else")),
        "{err}"
    );

    // The mirror: https://downloads.example.invalid/releases/blob.bin is fetched from
    // <mirror>/downloads.example.invalid/releases/blob.bin.
    let mirror = Server::start();
    mirror.put(
        "mirror/downloads.example.invalid/releases/blob.bin",
        b"payload".to_vec(),
    );
    let fresh_cache = tmp.path().join("fresh-cache");
    let mut mirrored = options(&fresh_cache, LockMode::Locked);
    mirrored.mirror = Some(mirror.url("mirror"));
    let resolved = catalog.resolve("fetched", &mirrored).unwrap();
    assert_eq!(resolved.origin, Origin::Fetched);
    assert_eq!(
        std::fs::read(&resolved.files["blob.bin"]).unwrap(),
        b"payload"
    );
    assert_eq!(mirror.requests(), 1);
}

/// Marks a cache file writable and overwrites it.
fn rot(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, b"bit rot").unwrap();
}

/// A corruption that cannot be repaired here is INFRA on the first attempt and on every retry
/// (the quarantined file must not turn into "not cached"), offline and with the network
/// unreachable, for the materialized file and for the download; once produced again, the
/// corruption is forgotten.
#[test]
fn a_corrupt_cache_stays_an_infrastructure_error_on_every_retry_until_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.put("blob.bin", b"payload".to_vec());
    let guests = url_guests(tmp.path(), &server.url("blob.bin"), "");
    let cache = tmp.path().join("cache");
    let online = options(&cache, LockMode::Lenient);
    let mut offline = online.clone();
    offline.network = Network::Offline;
    // Online, but every download fails as unavailable (nothing listens on port 9).
    let mut unreachable = online.clone();
    unreachable.mirror = Some("http://127.0.0.1:9".into());
    let object = cache.join("objects").join(sha256_hex(b"payload"));
    let resolve = |opts: &ResolveOptions| Catalog::load(&guests).unwrap().resolve("fetched", opts);

    // Unpinned: the materialized file rots and the download is gone.
    let file = resolve(&online).unwrap().files["blob.bin"].clone();
    rot(&file);
    std::fs::remove_file(&object).unwrap();
    for (attempt, opts) in [&offline, &offline, &unreachable, &offline]
        .iter()
        .enumerate()
    {
        let err = resolve(opts).unwrap_err();
        assert!(
            matches!(err, ArtifactError::CorruptCache(_)),
            "attempt {attempt}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(&resolve(&online).unwrap().files["blob.bin"]).unwrap(),
        b"payload"
    );

    // Pinned: the download rots while the materialized dir is gone.
    let entry = resolve(&online).unwrap().entry;
    let mut lock = Catalog::load(&guests).unwrap().lock().clone();
    lock.insert("fetched", entry);
    lock.save().unwrap();
    std::fs::remove_dir_all(cache.join("fetched")).unwrap();
    rot(&object);
    for (attempt, opts) in [&unreachable, &offline, &offline, &unreachable]
        .iter()
        .enumerate()
    {
        let err = resolve(opts).unwrap_err();
        assert!(
            matches!(err, ArtifactError::CorruptCache(_)),
            "attempt {attempt}: {err}"
        );
    }
    resolve(&online).unwrap();

    // Repaired: a cache emptied by hand is "not cached" again, not corrupt.
    std::fs::remove_dir_all(cache.join("fetched")).unwrap();
    std::fs::remove_file(&object).unwrap();
    let err = resolve(&offline).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

/// The listing-time check does not hide a quarantined artifact behind "not cached" in a later
/// test process: the trial runs and reports the corruption.
#[test]
fn a_quarantined_artifact_is_not_ignored_at_listing() {
    use vmharness::suite::availability::Check;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.put("blob.bin", b"payload".to_vec());
    let guests = url_guests(tmp.path(), &server.url("blob.bin"), "");
    let config = write(
        tmp.path(),
        "vm-configs/blob.toml",
        "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:fetched/blob.bin\"\n",
    );
    let loaded = vmharness::config::load(&config).unwrap();
    let cache = tmp.path().join("cache");
    let mut offline = options(&cache, LockMode::Lenient);
    offline.network = Network::Offline;
    let mut settings = vmharness::settings::Settings::defaults(tmp.path());
    settings.artifacts = offline.clone();
    let ignored = || {
        let check = Check::new(&settings).with_catalog(Catalog::load(&guests).unwrap());
        check.ignores(&check.missing_inputs(&loaded))
    };
    assert!(ignored(), "offline and not cached");
    let file = Catalog::load(&guests)
        .unwrap()
        .resolve("fetched", &options(&cache, LockMode::Lenient))
        .unwrap()
        .files["blob.bin"]
        .clone();
    assert!(!ignored(), "cached");
    rot(&file);
    std::fs::remove_file(cache.join("objects").join(sha256_hex(b"payload"))).unwrap();
    let err = resolve_err(&guests, &offline);
    assert!(matches!(err, ArtifactError::CorruptCache(_)), "{err}");
    assert!(
        !ignored(),
        "a quarantined artifact must run and report the corruption"
    );
}

/// The trial as the suite runs it: INFRA after its retries, never "ignored".
#[test]
fn a_corrupt_cache_offline_fails_the_trial_after_its_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    server.put("blob.bin", b"payload".to_vec());
    let guests = url_guests(tmp.path(), &server.url("blob.bin"), "");
    let config = write(
        tmp.path(),
        "vm-configs/blob.toml",
        "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:fetched/blob.bin\"\n",
    );
    let cache = tmp.path().join("cache");
    let file = Catalog::load(&guests)
        .unwrap()
        .resolve("fetched", &options(&cache, LockMode::Lenient))
        .unwrap()
        .files["blob.bin"]
        .clone();
    rot(&file);
    std::fs::remove_file(cache.join("objects").join(sha256_hex(b"payload"))).unwrap();
    let mut settings = vmharness::settings::Settings::defaults(tmp.path());
    settings.artifacts = options(&cache, LockMode::Lenient);
    settings.artifacts.network = Network::Offline;
    settings.infra_retries = 2;
    let loaded = vmharness::config::load(&config).unwrap();
    let resolver = vmharness::run::Resolver::from_settings(&settings);
    let result = vmharness::suite::run_trial_with(&loaded, &resolver, &settings);
    let Err(failed) = result else {
        panic!("a corrupt cache must fail the trial, not ignore it");
    };
    let message = format!("{failed:?}");
    assert!(
        message.contains("INFRA") && message.contains("corrupt"),
        "{message}"
    );
}

/// Redirect targets that different URL parsers read differently: the host the check approves
/// must be the host the client connects to. Each would reach 127.0.0.2 (a host the recipe does
/// not name) if misread; it must be refused before any byte goes there. A redirect that only
/// spells the origin's own host differently is followed.
#[test]
fn tricky_redirect_urls_cannot_smuggle_another_host_past_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = Server::start();
    let elsewhere = Server::start_at("127.0.0.2");
    elsewhere.put("blob.bin", b"smuggled".to_vec());
    origin.put("real.bin", b"payload".to_vec());
    let here = origin.addr.clone();
    let there = elsewhere.addr.clone();
    let port = there.rsplit(':').next().unwrap().to_string();
    let tricky = [
        format!("http://{there}\\@{here}/blob.bin"),
        format!("http://{there}\\\\@{here}/blob.bin"),
        format!("http://{here}@{there}/blob.bin"),
        format!("http://user:pw@{here}/real.bin"),
        format!("http://%31%32%37.0.0.2:{port}/blob.bin"),
        format!("http://127.0.0.2.:{port}/blob.bin"),
        format!("http://2130706434:{port}/blob.bin"),
        format!("http://0x7f.0.0.2:{port}/blob.bin"),
        format!("\\\\{there}/blob.bin"),
        format!("/\\{there}/blob.bin"),
        format!("http:\\\\{there}/blob.bin"),
    ];
    for (index, target) in tricky.iter().enumerate() {
        let path = format!("hop{index}");
        origin.redirect(&path, target);
        let guests = url_guests(&tmp.path().join(&path), &origin.url(&path), "");
        let cache = tmp.path().join("cache").join(&path);
        let result = Catalog::load(&guests)
            .unwrap()
            .resolve("fetched", &options(&cache, LockMode::Lenient));
        assert_eq!(
            elsewhere.requests(),
            0,
            "{target}: a host the check did not approve was contacted ({result:?})"
        );
        match result {
            Err(ArtifactError::Download { .. }) => {}
            Ok(resolved) if target.contains("/real.bin") => panic!(
                "{target}: credentials in a redirect must be refused, got {:?}",
                resolved.files
            ),
            other => panic!("{target}: expected a refusal, got {other:?}"),
        }
    }
    // The origin's own host, percent-encoded: the same host, followed.
    origin.redirect(
        "same",
        &format!(
            "http://%31%32%37.0.0.1:{}/real.bin",
            here.rsplit(':').next().unwrap()
        ),
    );
    let guests = url_guests(&tmp.path().join("same"), &origin.url("same"), "");
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve(
            "fetched",
            &options(&tmp.path().join("cache/same"), LockMode::Lenient),
        )
        .unwrap();
    assert_eq!(
        std::fs::read(&resolved.files["blob.bin"]).unwrap(),
        b"payload"
    );
}
