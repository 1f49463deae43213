//! The archive moves under a recipe: a local Debian archive (a `file:` mirror built with
//! `dpkg-deb --build` and `apt-ftparchive`) publishes v1 of a package, then v2 in its place,
//! and resolution goes through the same private apt configuration the Linux guests use.

mod artifact_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use artifact_support::{files_below, write};
use vmharness::artifact::{
    ArtifactError, Catalog, Keyring, LockEntry, LockMode, LockStatus, Network, Origin,
    ResolveOptions,
};
use vmharness::outcome::Provenance;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds a tiny .deb into `pool`.
fn deb(pool: &Path, name: &str, version: &str, depends: Option<&str>, payload: Option<&str>) {
    let root = tempfile::tempdir().unwrap();
    let mut control = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: test package\n"
    );
    if let Some(depends) = depends {
        control.push_str(&format!("Depends: {depends}\n"));
    }
    write(root.path(), "DEBIAN/control", &control);
    if let Some(payload) = payload {
        write(root.path(), "boot/payload", payload);
    }
    std::fs::create_dir_all(pool).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(root.path())
        .arg(pool.join(format!("{name}_{version}_amd64.deb"))));
}

/// Regenerates the archive's index for suite `testing`.
fn index(repo: &Path) {
    let dists = repo.join("dists/testing");
    let binary = dists.join("main/binary-amd64");
    std::fs::create_dir_all(&binary).unwrap();
    let packages = run(Command::new("apt-ftparchive")
        .current_dir(repo)
        .args(["packages", "pool"]));
    std::fs::write(binary.join("Packages"), packages).unwrap();
    let release = run(Command::new("apt-ftparchive").current_dir(repo).args([
        "-o",
        "APT::FTPArchive::Release::Suite=testing",
        "-o",
        "APT::FTPArchive::Release::Codename=testing",
        "-o",
        "APT::FTPArchive::Release::Architectures=amd64",
        "-o",
        "APT::FTPArchive::Release::Components=main",
        "release",
        "dists/testing",
    ]));
    std::fs::write(dists.join("Release"), release).unwrap();
}

/// Publishes version `n` of the kernel (`vmh-kernel-<n>`, metapackage `vmh-kernel`), removing
/// every earlier one: the archive moved and the old version is gone.
fn publish(repo: &Path, n: u32) {
    let pool = repo.join("pool");
    let _ = std::fs::remove_dir_all(&pool);
    deb(
        &pool,
        &format!("vmh-kernel-{n}"),
        &format!("{n}.0-1"),
        None,
        Some(&format!("kernel v{n}\n")),
    );
    deb(
        &pool,
        "vmh-kernel",
        &format!("{n}.0-1"),
        Some(&format!("vmh-kernel-{n} (= {n}.0-1)")),
        None,
    );
    index(repo);
}

fn guests_dir(root: &Path) -> PathBuf {
    let guests = root.join("guests");
    write(
        &guests,
        "build.sh",
        "set -e\ndpkg-deb -x \"$2\" \"$1/x\"\ncp \"$1/x/boot/payload\" \"$1/out.txt\"\nrm -r \"$1/x\"\n",
    );
    write(
        &guests,
        "kernel.toml",
        r#"[guest]
kind = "command"
inputs = ["build.sh"]
command = ["sh", "build.sh", "{out}", "{package:kernel}"]
outputs = ["out.txt"]
packages.kernel = { name = "vmh-kernel", arch = "amd64", suites = ["testing"], via_depends = "^vmh-kernel-[0-9]" }
"#,
    );
    guests
}

fn options(root: &Path, repo: &Path, mode: LockMode) -> ResolveOptions {
    let mut options = ResolveOptions::new(root.join("cache"));
    options.lock_mode = mode;
    options.debian.mirror = format!("file:{}", repo.display());
    options.debian.keyring = Keyring::TrustedLocal;
    // Always look at the archive again, so the move is seen at once.
    options.debian.max_age = Duration::ZERO;
    options
}

fn resolve(
    guests: &Path,
    options: &ResolveOptions,
) -> Result<vmharness::artifact::Resolved, ArtifactError> {
    Catalog::load(guests).unwrap().resolve("guest", options)
}

fn pin(guests: &Path, entry: LockEntry) {
    let mut lock = Catalog::load(guests).unwrap().lock().clone();
    lock.insert("guest", entry);
    lock.save().unwrap();
}

#[test]
fn a_moved_package_is_a_new_key_that_is_built_used_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    publish(&repo, 1);
    let guests = guests_dir(tmp.path());

    let first = resolve(&guests, &options(tmp.path(), &repo, LockMode::Lenient)).unwrap();
    assert_eq!(first.origin, Origin::Built);
    assert_eq!(
        std::fs::read_to_string(&first.files["out.txt"]).unwrap(),
        "kernel v1\n"
    );
    assert_eq!(first.packages.len(), 1);
    assert_eq!(
        first.packages[0].name, "vmh-kernel-1",
        "the metapackage is followed"
    );
    assert_eq!(first.packages[0].version, "1.0-1");
    let deb_sha = &first.packages[0].sha256;
    assert!(
        first.entry.inputs["package kernel"].contains(deb_sha.as_str()),
        "the lock records name, version and sha256: {:?}",
        first.entry.inputs
    );
    pin(&guests, first.entry.clone());
    let locked = resolve(&guests, &options(tmp.path(), &repo, LockMode::Locked)).unwrap();
    assert_eq!(locked.status, LockStatus::Locked);
    assert_eq!(locked.origin, Origin::Cached);
    assert!(Provenance::from(&locked)
        .summary()
        .contains("vmh-kernel-1 1.0-1"));

    publish(&repo, 2);
    // CI's default mode: not a failure.
    let moved = resolve(&guests, &options(tmp.path(), &repo, LockMode::Locked)).unwrap();
    assert_eq!(moved.origin, Origin::Built);
    assert_ne!(
        moved.entry.key, first.entry.key,
        "a moved package is a new key"
    );
    assert_eq!(
        std::fs::read_to_string(&moved.files["out.txt"]).unwrap(),
        "kernel v2\n"
    );
    let LockStatus::NewKey {
        changes,
        previous_key,
    } = &moved.status
    else {
        panic!("expected a new key: {:?}", moved.status);
    };
    assert_eq!(previous_key.as_deref(), Some(first.entry.key.as_str()));
    assert_eq!(
        changes,
        &vec!["package kernel: vmh-kernel-1 1.0-1 -> vmh-kernel-2 2.0-1".to_string()]
    );
    let provenance = Provenance::from(&moved);
    assert!(provenance.new_key);
    assert!(
        provenance.summary().contains("booted vmh-kernel-2 2.0-1"),
        "{}",
        provenance.summary()
    );
    assert!(provenance
        .summary()
        .contains("vmh-kernel-1 1.0-1 -> vmh-kernel-2 2.0-1"));

    // Strict mode turns the move into an error that says what moved.
    let err = resolve(&guests, &options(tmp.path(), &repo, LockMode::Strict)).unwrap_err();
    assert!(
        matches!(err, ArtifactError::NotLocked { ref reason, .. } if reason.contains("vmh-kernel-1 1.0-1 -> vmh-kernel-2 2.0-1")),
        "{err}"
    );
}

#[test]
fn a_seen_key_rebuilds_offline_from_cached_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    publish(&repo, 1);
    let guests = guests_dir(tmp.path());
    let online = options(tmp.path(), &repo, LockMode::Lenient);
    let first = resolve(&guests, &online).unwrap();
    // The build output is gone (a `cargo clean` of the artifact), and so is the archive.
    std::fs::remove_dir_all(tmp.path().join("cache/guest")).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
    let mut offline = online.clone();
    offline.network = Network::Offline;
    let again = resolve(&guests, &offline).unwrap();
    assert_eq!(again.origin, Origin::Built);
    assert_eq!(again.entry, first.entry);
}

#[test]
fn same_key_with_other_bytes_is_an_error_naming_the_inputs_and_nothing_is_current() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    publish(&repo, 1);
    let guests = guests_dir(tmp.path());
    let opts = options(tmp.path(), &repo, LockMode::Lenient);
    let built = resolve(&guests, &opts).unwrap();
    let mut tampered = built.entry.clone();
    tampered.outputs.insert("out.txt".into(), "0".repeat(64));
    pin(&guests, tampered);
    std::fs::remove_dir_all(tmp.path().join("cache/guest")).unwrap();
    for mode in [LockMode::Lenient, LockMode::Locked, LockMode::Strict] {
        let err = resolve(&guests, &options(tmp.path(), &repo, mode)).unwrap_err();
        let ArtifactError::Mismatch {
            expected,
            actual,
            inputs,
            ..
        } = &err
        else {
            panic!("expected a mismatch: {err}");
        };
        assert_eq!(expected, &"0".repeat(64));
        assert_eq!(actual, &built.entry.outputs["out.txt"]);
        assert!(
            inputs.contains("package kernel = vmh-kernel-1 1.0-1"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("not reproducible, or tampering"), "{text}");
    }
    let materialized: Vec<PathBuf> = files_below(&tmp.path().join("cache/guest"));
    assert!(
        materialized.iter().all(|p| !p.ends_with("out.txt")),
        "nothing is marked current: {materialized:?}"
    );
}

#[test]
fn an_archive_that_lacks_the_package_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("pool")).unwrap();
    deb(&repo.join("pool"), "something-else", "1", None, None);
    index(&repo);
    let guests = guests_dir(tmp.path());
    let err = resolve(&guests, &options(tmp.path(), &repo, LockMode::Lenient)).unwrap_err();
    assert!(
        matches!(err, ArtifactError::Apt { ref action, .. } if action.contains("vmh-kernel")),
        "{err}"
    );
}

#[test]
fn an_unverified_source_is_only_accepted_for_file_mirrors() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = guests_dir(tmp.path());
    let mut opts = options(tmp.path(), Path::new("/nonexistent"), LockMode::Lenient);
    opts.debian.mirror = "http://deb.debian.org/debian".into();
    let err = resolve(&guests, &opts).unwrap_err();
    assert!(
        err.to_string().contains("only allowed for file: mirrors"),
        "{err}"
    );
}

/// A cached package whose bytes changed cannot be fetched again offline: INFRA (the corruption,
/// with the bytes kept), on the first attempt and every retry, never "unavailable".
#[test]
fn a_corrupt_cached_package_offline_is_an_infrastructure_error_on_every_retry() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    publish(&repo, 1);
    let guests = guests_dir(tmp.path());
    let online = options(tmp.path(), &repo, LockMode::Lenient);
    let first = resolve(&guests, &online).unwrap();
    std::fs::remove_dir_all(tmp.path().join("cache/guest")).unwrap();
    let deb = tmp
        .path()
        .join("cache/objects")
        .join(&first.packages[0].sha256);
    std::fs::set_permissions(&deb, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&deb, b"bit rot").unwrap();
    let mut offline = online.clone();
    offline.network = Network::Offline;
    for attempt in 0..3 {
        let err = resolve(&guests, &offline).unwrap_err();
        let ArtifactError::CorruptCache(corruption) = &err else {
            panic!("attempt {attempt}: expected CorruptCache: {err}");
        };
        assert_eq!(corruption.expected, first.packages[0].sha256);
        assert!(!err.is_unavailable());
    }
    assert!(files_below(&tmp.path().join("cache/quarantine"))
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b == b"bit rot")));
    // Online, the package is fetched again and the corruption is over.
    assert_eq!(resolve(&guests, &online).unwrap().entry, first.entry);
    assert_eq!(resolve(&guests, &offline).unwrap().origin, Origin::Cached);
}

/// Offline, a built guest that is gone but whose packages are cached can be rebuilt, so the
/// listing-time check must not ignore its trial; without the packages it must.
#[test]
fn offline_listing_counts_a_guest_rebuildable_from_cached_packages_as_available() {
    use vmharness::suite::availability::Check;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    publish(&repo, 1);
    let guests = guests_dir(tmp.path());
    let config = write(
        tmp.path(),
        "vm-configs/guest.toml",
        "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:guest/out.txt\"\n",
    );
    let loaded = vmharness::config::load(&config).unwrap();
    let online = options(tmp.path(), &repo, LockMode::Lenient);
    let mut offline = online.clone();
    offline.network = Network::Offline;
    let mut settings = vmharness::settings::Settings::defaults(tmp.path());
    settings.artifacts = offline.clone();
    let ignored = || {
        let check = Check::new(&settings).with_catalog(Catalog::load(&guests).unwrap());
        let missing = check.missing_inputs(&loaded);
        check.ignores(&missing)
    };
    let built = resolve(&guests, &online).unwrap();
    assert!(!ignored(), "built and cached");
    std::fs::remove_dir_all(tmp.path().join("cache/guest")).unwrap();
    assert!(
        !ignored(),
        "the packages are cached: `guests build` rebuilds it offline, so the trial must run"
    );
    assert_eq!(resolve(&guests, &offline).unwrap().origin, Origin::Built);
    std::fs::remove_dir_all(tmp.path().join("cache/guest")).unwrap();
    for package in &built.packages {
        std::fs::remove_file(tmp.path().join("cache/objects").join(&package.sha256)).unwrap();
    }
    assert!(ignored(), "a package is not cached: it needs the network");
}
