//! Local builds: a file built from source stands in for a `url` artifact's release only when
//! the release is unavailable, under a key of its own, labelled, and never pinned in the lock.
//! Real zips, a real cache and a real local HTTP server for the release.

mod artifact_support;

use std::path::{Path, PathBuf};

use artifact_support::{options, sha256_hex, write, zip_bytes, Server};
use vmharness::artifact::{
    ArtifactError, Catalog, LocalBuild, LockMode, LockStatus, Network, Origin, ResolveOptions,
};
use vmharness::outcome::Provenance;

const OUTPUT: &str = "nimbos-x86_64.bin";

/// A guests dir with the url recipe `nimbos-x86_64` (a zip holding `nimbos.bin`) for `url`, and
/// a lock file pinning an unrelated artifact, so "untouched" means "byte-identical".
fn nimbos_guests(root: &Path, url: &str) -> PathBuf {
    let guests = root.join("guests");
    write(
        &guests,
        "nimbos.toml",
        &format!(
            "[nimbos-x86_64]\nkind = \"url\"\nurl = \"{url}\"\narchive = \"zip\"\nfiles = {{ \"{OUTPUT}\" = \"nimbos.bin\" }}\n\n\
             [firmware]\nkind = \"path\"\npath = \"firmware.bin\"\n"
        ),
    );
    write(&guests, "firmware.bin", "FIRMWARE");
    let entry = Catalog::load(&guests)
        .unwrap()
        .resolve(
            "firmware",
            &options(&root.join("scratch"), LockMode::Update),
        )
        .unwrap()
        .entry;
    let mut lock = Catalog::load(&guests).unwrap().lock().clone();
    lock.insert("firmware", entry);
    lock.save().unwrap();
    guests
}

fn offline(cache: &Path, mode: LockMode) -> ResolveOptions {
    let mut options = options(cache, mode);
    options.network = Network::Offline;
    options
}

fn lock_bytes(guests: &Path) -> Vec<u8> {
    std::fs::read(guests.join("guests.lock")).unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_local_build_stands_in_for_an_unavailable_release_and_the_lock_is_never_touched() {
    let server = Server::start();
    let release = zip_bytes(&[("nimbos.bin", b"RELEASE")]);
    server.put("v0.7/x86_64_usertests.zip", release.clone());
    let tmp = tempfile::tempdir().unwrap();
    let guests = nimbos_guests(tmp.path(), &server.url("v0.7/x86_64_usertests.zip"));
    let local = zip_bytes(&[("nimbos.bin", b"BUILT FROM SOURCE")]);
    let local_file = write(tmp.path(), "fixtures/x86_64_usertests.zip", "");
    std::fs::write(&local_file, &local).unwrap();
    let local_sha = sha256_hex(&local);
    let cache = tmp.path().join("cache");
    let lock_before = lock_bytes(&guests);
    let catalog = Catalog::load(&guests).unwrap();

    let imported = catalog
        .import_local_build(
            "nimbos-x86_64",
            &local_file,
            &offline(&cache, LockMode::Lenient),
        )
        .unwrap();
    let expected_status = LockStatus::LocalBuild {
        sha256: local_sha.clone(),
        from: local_file.canonicalize().unwrap(),
    };
    assert_eq!(imported.status, expected_status);
    assert_eq!(read(&imported.files[OUTPUT]), b"BUILT FROM SOURCE");
    let record = catalog
        .local_build("nimbos-x86_64", &offline(&cache, LockMode::Lenient))
        .unwrap()
        .expect("a record");
    assert_eq!(record.sha256, local_sha);
    assert_eq!(record.from, local_file.canonicalize().unwrap());
    assert!(!record.imported.is_empty());
    assert!(cache.join("local-builds/nimbos-x86_64.toml").is_file());

    // Offline, the release cannot be had: the local build stands in, labelled, in the default
    // mode and in CI's (it is labelled, not pinned).
    let release_key = Catalog::load(&guests)
        .unwrap()
        .resolve(
            "nimbos-x86_64",
            &options(&tmp.path().join("probe"), LockMode::Lenient),
        )
        .unwrap()
        .entry
        .key;
    assert_eq!(server.requests(), 1);
    for mode in [LockMode::Lenient, LockMode::Locked] {
        let resolved = catalog
            .resolve("nimbos-x86_64", &offline(&cache, mode))
            .unwrap();
        assert_eq!(resolved.status, expected_status, "{mode:?}");
        assert_eq!(read(&resolved.files[OUTPUT]), b"BUILT FROM SOURCE");
        assert_ne!(
            resolved.entry.key, release_key,
            "a local build lives under a key of its own"
        );
        assert!(!resolved.dir.ends_with(&release_key), "{:?}", resolved.dir);
        let provenance = Provenance::from(&resolved);
        assert!(provenance.local_build);
        assert_eq!(
            provenance.lock,
            format!(
                "local build, not the release (sha256 {}…, imported from {})",
                &local_sha[..12],
                local_file.canonicalize().unwrap().display()
            )
        );
        assert!(provenance
            .summary()
            .contains("local build, not the release"));
    }
    let reference = "artifact:nimbos-x86_64/nimbos-x86_64.bin".parse().unwrap();
    let (path, resolved) = catalog
        .resolve_ref_with_artifact(&reference, &offline(&cache, LockMode::Locked))
        .unwrap();
    let provenance = Provenance::from(&resolved);
    assert_eq!(read(&path), b"BUILT FROM SOURCE");
    assert!(provenance.local_build);

    // Strict mode accepts only what the lock pins.
    let err = catalog
        .resolve("nimbos-x86_64", &offline(&cache, LockMode::Strict))
        .unwrap_err();
    assert!(
        matches!(&err, ArtifactError::LocalBuildRefused { artifact, sha256, .. } if artifact == "nimbos-x86_64" && *sha256 == local_sha),
        "{err}"
    );
    assert!(err.to_string().contains("strict"), "{err}");
    // Recording the lock never takes a local build.
    for mode in [LockMode::Record, LockMode::Update] {
        let err = catalog
            .resolve("nimbos-x86_64", &offline(&cache, mode))
            .unwrap_err();
        assert!(
            matches!(err, ArtifactError::Unavailable { .. }),
            "{mode:?}: {err}"
        );
    }
    assert_eq!(server.requests(), 1, "offline means offline");
    assert_eq!(lock_bytes(&guests), lock_before, "guests.lock untouched");

    // With the network, the release wins over the local build.
    let online = catalog
        .resolve("nimbos-x86_64", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert_eq!(read(&online.files[OUTPUT]), b"RELEASE");
    assert_eq!(online.origin, Origin::Fetched);
    assert!(
        matches!(online.status, LockStatus::Unlocked { .. }),
        "{:?}",
        online.status
    );
    assert_eq!(online.entry.key, release_key);
    assert_eq!(
        online.entry.download.as_deref(),
        Some(sha256_hex(&release).as_str())
    );
    assert!(!Provenance::from(&online).local_build);
    assert_eq!(lock_bytes(&guests), lock_before, "guests.lock untouched");

    // Pinned: CI online gets the locked release; offline, the cached release still beats the
    // local build.
    let mut lock = catalog.lock().clone();
    lock.insert("nimbos-x86_64", online.entry.clone());
    lock.save().unwrap();
    let pinned = Catalog::load(&guests).unwrap();
    let fresh_cache = tmp.path().join("fresh-cache");
    pinned
        .import_local_build(
            "nimbos-x86_64",
            &local_file,
            &offline(&fresh_cache, LockMode::Locked),
        )
        .unwrap();
    let locked = pinned
        .resolve("nimbos-x86_64", &options(&fresh_cache, LockMode::Locked))
        .unwrap();
    assert_eq!(locked.status, LockStatus::Locked);
    assert_eq!(read(&locked.files[OUTPUT]), b"RELEASE");
    let cached = pinned
        .resolve("nimbos-x86_64", &offline(&fresh_cache, LockMode::Locked))
        .unwrap();
    assert_eq!(cached.status, LockStatus::Locked);
    assert_eq!(cached.origin, Origin::Cached);
    assert_eq!(read(&cached.files[OUTPUT]), b"RELEASE");
}

#[test]
fn an_unreachable_release_host_falls_back_to_the_local_build() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: connection refused, retried, then unavailable.
    let guests = nimbos_guests(tmp.path(), "http://127.0.0.1:9/x86_64_usertests.zip");
    let local = write(tmp.path(), "built.zip", "");
    std::fs::write(&local, zip_bytes(&[("nimbos.bin", b"LOCAL")])).unwrap();
    let cache = tmp.path().join("cache");
    let lock_before = lock_bytes(&guests);
    let catalog = Catalog::load(&guests).unwrap();
    let opts = options(&cache, LockMode::Locked);
    let err = catalog.resolve("nimbos-x86_64", &opts).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    catalog
        .import_local_build("nimbos-x86_64", &local, &opts)
        .unwrap();
    let resolved = catalog.resolve("nimbos-x86_64", &opts).unwrap();
    assert!(
        matches!(resolved.status, LockStatus::LocalBuild { .. }),
        "{:?}",
        resolved.status
    );
    assert_eq!(read(&resolved.files[OUTPUT]), b"LOCAL");
    assert_eq!(lock_bytes(&guests), lock_before);
}

#[test]
fn importing_checks_the_recipe_and_the_archive_and_replaces_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = nimbos_guests(tmp.path(), "https://release.example.invalid/x.zip");
    let cache = tmp.path().join("cache");
    let opts = offline(&cache, LockMode::Lenient);
    let catalog = Catalog::load(&guests).unwrap();
    let lock_before = lock_bytes(&guests);

    let first = write(tmp.path(), "first.zip", "");
    std::fs::write(&first, zip_bytes(&[("nimbos.bin", b"ONE")])).unwrap();
    let err = catalog
        .import_local_build("firmware", &first, &opts)
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::Recipe { ref message, .. } if message.contains("not a `url` artifact")),
        "{err}"
    );
    let wrong = write(tmp.path(), "wrong.zip", "");
    std::fs::write(&wrong, zip_bytes(&[("kernel.bin", b"X")])).unwrap();
    let err = catalog
        .import_local_build("nimbos-x86_64", &wrong, &opts)
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::MissingOutput { ref output, .. } if output == OUTPUT),
        "{err}"
    );
    assert!(
        catalog
            .local_build("nimbos-x86_64", &opts)
            .unwrap()
            .is_none(),
        "a file that does not unpack is not recorded"
    );

    catalog
        .import_local_build("nimbos-x86_64", &first, &opts)
        .unwrap();
    let second = write(tmp.path(), "second.zip", "");
    let second_bytes = zip_bytes(&[("nimbos.bin", b"TWO")]);
    std::fs::write(&second, &second_bytes).unwrap();
    catalog
        .import_local_build("nimbos-x86_64", &second, &opts)
        .unwrap();
    let record: LocalBuild = catalog
        .local_build("nimbos-x86_64", &opts)
        .unwrap()
        .unwrap();
    assert_eq!(record.sha256, sha256_hex(&second_bytes));
    assert_eq!(record.from, second.canonicalize().unwrap());
    let resolved = catalog.resolve("nimbos-x86_64", &opts).unwrap();
    assert_eq!(read(&resolved.files[OUTPUT]), b"TWO");

    // The imported object is gone: unavailable, with what to do.
    let objects = cache.join("objects");
    std::fs::remove_file(objects.join(&record.sha256)).unwrap();
    std::fs::remove_dir_all(&resolved.dir).unwrap();
    let err = catalog.resolve("nimbos-x86_64", &opts).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("import it again"), "{err}");

    // A record naming something other than a sha256 is refused, not followed.
    let record_file = cache.join("local-builds/nimbos-x86_64.toml");
    std::fs::write(
        &record_file,
        "sha256 = \"../../guests/firmware.bin\"\nfrom = \"/x\"\nimported = \"now\"\n",
    )
    .unwrap();
    let err = catalog.resolve("nimbos-x86_64", &opts).unwrap_err();
    assert!(
        matches!(err, ArtifactError::LocalBuildRecord { .. }),
        "{err}"
    );
    assert!(guests.join("firmware.bin").is_file());
    assert_eq!(lock_bytes(&guests), lock_before);
}

#[test]
fn the_listing_check_counts_a_recorded_local_build_as_available() {
    use vmharness::suite::availability::Check;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let guests = nimbos_guests(root, "https://release.example.invalid/x86_64_usertests.zip");
    let config = write(
        root,
        "vm-configs/nimbos.toml",
        "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:nimbos-x86_64/nimbos-x86_64.bin\"\n",
    );
    let loaded = vmharness::config::load(&config).unwrap();
    let cache = root.join("cache");
    let settings = |mode: LockMode| {
        let mut settings = vmharness::settings::Settings::defaults(root);
        settings.artifacts = offline(&cache, mode);
        settings
    };
    let missing = |mode: LockMode| {
        let check = Check::new(&settings(mode)).with_catalog(Catalog::load(&guests).unwrap());
        let missing = check.missing_inputs(&loaded);
        (check.ignores(&missing), missing.len())
    };
    assert_eq!(missing(LockMode::Lenient), (true, 1), "not cached, offline");
    let local = write(root, "built.zip", "");
    std::fs::write(&local, zip_bytes(&[("nimbos.bin", b"LOCAL")])).unwrap();
    Catalog::load(&guests)
        .unwrap()
        .import_local_build("nimbos-x86_64", &local, &offline(&cache, LockMode::Lenient))
        .unwrap();
    // The materialized local build is not what makes it available: the record is.
    std::fs::remove_dir_all(cache.join("nimbos-x86_64")).unwrap();
    for mode in [LockMode::Lenient, LockMode::Locked] {
        assert_eq!(missing(mode), (false, 0), "{mode:?}");
    }
    assert_eq!(
        missing(LockMode::Strict),
        (true, 1),
        "strict mode refuses local builds"
    );
}
