//! Resolution against real files, real commands and a real local HTTP server.

mod artifact_support;

use std::path::Path;

use artifact_support::{
    count_lines, counting_guests, options, sha256_hex, write, zip_bytes, Server,
};
use vmharness::artifact::{
    ArtifactError, ArtifactRef, Catalog, LockEntry, LockMode, LockStatus, Network, Origin,
};

/// Writes `entry` as the lock entry of `name` in the guests dir's lock file.
fn pin(guests: &Path, name: &str, entry: LockEntry) {
    let mut lock = Catalog::load(guests).unwrap().lock().clone();
    lock.insert(name, entry);
    lock.save().unwrap();
}

fn materialized(cache: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(cache.join(name))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unchanged_inputs_never_rebuild_and_changed_inputs_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, counter) = counting_guests(tmp.path(), "");
    let cache = tmp.path().join("cache");
    let opts = options(&cache, LockMode::Lenient);

    let first = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    assert_eq!(first.origin, Origin::Built);
    assert_eq!(
        std::fs::read_to_string(&first.files["out.txt"]).unwrap(),
        "first\n"
    );
    let again = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    assert_eq!(again.origin, Origin::Cached);
    assert_eq!(
        count_lines(&counter),
        1,
        "unchanged inputs must not rebuild"
    );

    write(&guests, "input.txt", "second\n");
    let changed = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    assert_eq!(count_lines(&counter), 2, "a changed input must rebuild");
    assert_ne!(changed.entry.key, first.entry.key);
    assert_eq!(
        std::fs::read_to_string(&changed.files["out.txt"]).unwrap(),
        "second\n"
    );

    write(&guests, "input.txt", "first\n");
    let back = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap();
    assert_eq!(back.entry.key, first.entry.key);
    assert_eq!(
        count_lines(&counter),
        2,
        "the earlier build is still cached"
    );
}

#[test]
fn changed_command_or_env_changes_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, _) = counting_guests(tmp.path(), "");
    let opts = options(&tmp.path().join("cache"), LockMode::Lenient);
    let base = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap()
        .entry
        .key;
    let recipe = std::fs::read_to_string(guests.join("counted.toml")).unwrap();
    write(
        &guests,
        "counted.toml",
        &format!("{recipe}env = {{ FLAVOR = \"x\" }}\n"),
    );
    let with_env = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap()
        .entry
        .key;
    assert_ne!(base, with_env);
    write(
        &guests,
        "counted.toml",
        &recipe.replace("echo tool 1.0", "echo tool 2.0"),
    );
    let new_tool = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &opts)
        .unwrap()
        .entry
        .key;
    assert_ne!(base, new_tool);
}

#[test]
fn lock_mismatch_is_an_error_and_nothing_is_marked_current() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, _) = counting_guests(tmp.path(), "");
    let scratch = options(&tmp.path().join("scratch-cache"), LockMode::Update);
    let mut entry = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &scratch)
        .unwrap()
        .entry;
    let good = entry.outputs["out.txt"].clone();
    entry.outputs.insert("out.txt".into(), "0".repeat(64));
    pin(&guests, "counted", entry);

    let cache = tmp.path().join("cache");
    for mode in [LockMode::Locked, LockMode::Lenient] {
        let err = Catalog::load(&guests)
            .unwrap()
            .resolve("counted", &options(&cache, mode))
            .unwrap_err();
        match &err {
            ArtifactError::Mismatch {
                artifact,
                what,
                expected,
                actual,
                ..
            } => {
                assert_eq!((artifact.as_str(), what.as_str()), ("counted", "out.txt"));
                assert_eq!(expected, &"0".repeat(64));
                assert_eq!(actual, &good);
            }
            other => panic!("expected a mismatch, got {other}"),
        }
        assert!(
            materialized(&cache, "counted").is_empty(),
            "{:?}",
            materialized(&cache, "counted")
        );
    }
}

#[test]
fn a_previously_cached_build_that_disagrees_with_the_lock_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, counter) = counting_guests(tmp.path(), "");
    let cache = tmp.path().join("cache");
    let mut entry = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Lenient))
        .unwrap()
        .entry;
    entry.outputs.insert("out.txt".into(), "f".repeat(64));
    pin(&guests, "counted", entry);
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Locked))
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
    assert_eq!(
        count_lines(&counter),
        2,
        "rebuilt once to re-check, then refused"
    );
    assert!(materialized(&cache, "counted").is_empty());
}

#[test]
fn strict_mode_requires_an_entry_and_accepts_a_recorded_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (guests, _) = counting_guests(tmp.path(), "");
    let cache = tmp.path().join("cache");
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Strict))
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::NotLocked { ref artifact, .. } if artifact == "counted"),
        "{err}"
    );
    assert!(!err.is_unavailable());

    let lenient = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert!(matches!(lenient.status, LockStatus::NewKey { .. }));
    pin(&guests, "counted", lenient.entry.clone());
    let text = std::fs::read_to_string(guests.join("guests.lock")).unwrap();
    assert!(
        text.contains("name = \"counted\"") && text.contains(&lenient.entry.outputs["out.txt"]),
        "{text}"
    );
    assert!(
        text.contains("\"file input.txt\" = \"sha256:"),
        "inputs are recorded: {text}"
    );

    for mode in [LockMode::Locked, LockMode::Strict] {
        let locked = Catalog::load(&guests)
            .unwrap()
            .resolve("counted", &options(&cache, mode))
            .unwrap();
        assert_eq!(locked.status, LockStatus::Locked);
        assert_eq!(locked.entry, lenient.entry);
    }

    write(&guests, "input.txt", "edited\n");
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Strict))
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::NotLocked { ref reason, .. } if reason.contains("file input.txt: sha256:")),
        "strict mode names what moved: {err}"
    );
    // CI's default: a command recipe whose inputs moved is built, used and reported.
    let moved = Catalog::load(&guests)
        .unwrap()
        .resolve("counted", &options(&cache, LockMode::Locked))
        .unwrap();
    let LockStatus::NewKey {
        previous_key,
        changes,
    } = &moved.status
    else {
        panic!("expected a new key: {:?}", moved.status);
    };
    assert_eq!(previous_key.as_deref(), Some(lenient.entry.key.as_str()));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].starts_with("file input.txt: sha256:"),
        "{changes:?}"
    );
}

#[test]
fn failing_command_reports_its_stderr_and_missing_outputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "bad.toml",
        r#"[fails]
kind = "command"
command = ["sh", "-c", "echo compiler exploded >&2; exit 3"]
outputs = ["x.bin"]

[lazy]
kind = "command"
command = ["true"]
outputs = ["x.bin"]

[needs-net]
kind = "command"
command = ["sh", "-c", "echo 'Could not resolve deb.debian.org' >&2; exit 100"]
outputs = ["x.deb"]
network = true
"#,
    );
    let catalog = Catalog::load(&guests).unwrap();
    let opts = options(&tmp.path().join("cache"), LockMode::Lenient);
    let err = catalog.resolve("fails", &opts).unwrap_err();
    assert!(
        matches!(err, ArtifactError::CommandFailed { ref stderr_tail, .. } if stderr_tail.contains("compiler exploded")),
        "{err}"
    );
    let err = catalog.resolve("lazy", &opts).unwrap_err();
    assert!(
        matches!(err, ArtifactError::MissingOutput { ref output, .. } if output == "x.bin"),
        "{err}"
    );
    let err = catalog.resolve("needs-net", &opts).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("Could not resolve"), "{err}");
}

#[test]
fn url_zip_end_to_end_download_verify_unpack() {
    let server = Server::start();
    let zip = zip_bytes(&[("dir/kernel.bin", b"KERNEL"), ("README", b"hello")]);
    server.put("guest.zip", zip.clone());
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "net.toml",
        &format!(
            "[zipped]\nkind = \"url\"\nurl = \"{}\"\narchive = \"zip\"\nfiles = {{ \"kernel\" = \"dir/kernel.bin\", \"docs/README\" = \"README\" }}\n",
            server.url("guest.zip")
        ),
    );
    let cache = tmp.path().join("cache");
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("zipped", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert_eq!(resolved.origin, Origin::Fetched);
    assert_eq!(std::fs::read(&resolved.files["kernel"]).unwrap(), b"KERNEL");
    assert_eq!(
        std::fs::read(&resolved.files["docs/README"]).unwrap(),
        b"hello"
    );
    assert_eq!(
        resolved.entry.download.as_deref(),
        Some(sha256_hex(&zip).as_str())
    );
    assert_eq!(resolved.entry.outputs["kernel"], sha256_hex(b"KERNEL"));
    assert_eq!(server.requests(), 1);

    pin(&guests, "zipped", resolved.entry.clone());
    let catalog = Catalog::load(&guests).unwrap();
    let reference: ArtifactRef = "artifact:zipped/kernel".parse().unwrap();
    let path = catalog
        .resolve_ref(&reference, &options(&cache, LockMode::Locked))
        .unwrap();
    assert_eq!(path, resolved.files["kernel"]);
    assert_eq!(
        server.requests(),
        1,
        "a verified cache hit does not download"
    );

    // The cached download is reused (verified) when the materialized dir is gone.
    std::fs::remove_dir_all(cache.join("zipped")).unwrap();
    let again = catalog
        .resolve("zipped", &options(&cache, LockMode::Locked))
        .unwrap();
    assert_eq!(again.status, LockStatus::Locked);
    assert_eq!(server.requests(), 1);

    let err = catalog
        .resolve_ref(
            &"artifact:zipped/nope".parse().unwrap(),
            &options(&cache, LockMode::Locked),
        )
        .unwrap_err();
    assert!(matches!(err, ArtifactError::UnknownFile { .. }), "{err}");
}

#[test]
fn changed_download_is_rejected_before_unpacking() {
    let server = Server::start();
    server.put("guest.zip", zip_bytes(&[("kernel.bin", b"GOOD")]));
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "net.toml",
        &format!("[zipped]\nkind = \"url\"\nurl = \"{}\"\narchive = \"zip\"\nfiles = {{ kernel = \"kernel.bin\" }}\n", server.url("guest.zip")),
    );
    let entry = Catalog::load(&guests)
        .unwrap()
        .resolve("zipped", &options(&tmp.path().join("c1"), LockMode::Update))
        .unwrap()
        .entry;
    pin(&guests, "zipped", entry.clone());
    server.put("guest.zip", zip_bytes(&[("kernel.bin", b"EVIL")]));
    let cache = tmp.path().join("c2");
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("zipped", &options(&cache, LockMode::Lenient))
        .unwrap_err();
    match err {
        ArtifactError::Mismatch { what, expected, .. } => {
            assert!(what.starts_with("download http://"), "{what}");
            assert_eq!(Some(expected), entry.download);
        }
        other => panic!("expected a download mismatch, got {other}"),
    }
    assert!(materialized(&cache, "zipped").is_empty());
    let objects: Vec<_> = std::fs::read_dir(cache.join("objects"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        objects.is_empty(),
        "an unverified download must not be kept: {objects:?}"
    );
}

#[test]
fn transient_503_is_retried_and_plain_download_is_named_after_the_url() {
    let server = Server::start();
    server.put("fw/firmware.bin", b"FIRMWARE".to_vec());
    server.fail_next(1);
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "fw.toml",
        &format!(
            "[fw]\nkind = \"url\"\nurl = \"{}\"\n",
            server.url("fw/firmware.bin")
        ),
    );
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &options(&tmp.path().join("cache"), LockMode::Lenient))
        .unwrap();
    assert_eq!(
        std::fs::read(&resolved.files["firmware.bin"]).unwrap(),
        b"FIRMWARE"
    );
    assert_eq!(server.requests(), 2, "one 503, then one success");
}

#[test]
fn persistent_503_and_404_are_http_errors() {
    let server = Server::start();
    server.put("x.bin", b"x".to_vec());
    server.fail_next(100);
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "x.toml",
        &format!(
            "[busy]\nkind = \"url\"\nurl = \"{}\"\n\n[gone]\nkind = \"url\"\nurl = \"{}\"\n",
            server.url("x.bin"),
            server.url("missing.bin")
        ),
    );
    let catalog = Catalog::load(&guests).unwrap();
    let opts = options(&tmp.path().join("cache"), LockMode::Lenient);
    let err = catalog.resolve("busy", &opts).unwrap_err();
    assert!(
        matches!(err, ArtifactError::HttpStatus { status: 503, .. }),
        "{err}"
    );
    assert_eq!(server.requests(), 3, "all attempts used");
    server.fail_next(0);
    let err = catalog.resolve("gone", &opts).unwrap_err();
    assert!(
        matches!(err, ArtifactError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert_eq!(server.requests(), 4, "a 404 is not retried");
}

#[test]
fn unreachable_hosts_and_offline_mode_are_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "off.toml",
        "[closed-port]\nkind = \"url\"\nurl = \"http://127.0.0.1:9/guest.bin\"\n\n\
         [invalid-host]\nkind = \"url\"\nurl = \"https://artifacts.example.invalid/guest.bin\"\n",
    );
    let catalog = Catalog::load(&guests).unwrap();
    let opts = options(&tmp.path().join("cache"), LockMode::Lenient);
    for name in ["closed-port", "invalid-host"] {
        let err = catalog.resolve(name, &opts).unwrap_err();
        assert!(err.is_unavailable(), "{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    let server = Server::start();
    write(
        &guests,
        "srv.toml",
        &format!(
            "[served]\nkind = \"url\"\nurl = \"{}\"\n",
            server.url("a.bin")
        ),
    );
    server.put("a.bin", b"A".to_vec());
    let mut offline = opts.clone();
    offline.network = Network::Offline;
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("served", &offline)
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(server.requests(), 0);
}

#[test]
fn path_recipes_are_verified_against_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    let firmware = write(tmp.path(), "fw/CODE.fd", "firmware v1");
    write(
        &guests,
        "local.toml",
        &format!("[fw]\nkind = \"path\"\npath = \"{}\"\nfile = \"OVMF.fd\"\n\n[absent]\nkind = \"path\"\npath = \"nope/absent.fd\"\n", firmware.display()),
    );
    let opts = options(&tmp.path().join("cache"), LockMode::Locked);
    let entry = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &options(&tmp.path().join("cache"), LockMode::Update))
        .unwrap()
        .entry;
    pin(&guests, "fw", entry);
    let path = Catalog::load(&guests)
        .unwrap()
        .resolve_ref(&"artifact:fw/OVMF.fd".parse().unwrap(), &opts)
        .unwrap();
    assert_eq!(path, firmware);
    std::fs::write(&firmware, "firmware v2").unwrap();
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &opts)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve(
            "absent",
            &options(&tmp.path().join("cache"), LockMode::Lenient),
        )
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[test]
fn bad_recipes_are_reported_with_file_and_location() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "a.toml",
        "[good]\nkind = \"url\"\nurl = \"https://x.test/a.bin\"\n",
    );
    let catalog = Catalog::load(&guests).unwrap();
    let err = catalog.recipe("goood").unwrap_err();
    assert!(
        matches!(err, ArtifactError::UnknownArtifact { suggestion: Some(ref s), .. } if s == "good"),
        "{err}"
    );

    write(&guests, "b.toml", "# other guests\n\n[other]\nkind = \"url\"\nurl = \"https://x.test/b.bin\"\nchecksum = \"x\"\n");
    let err = Catalog::load(&guests).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("b.toml") && text.contains("line 3") && text.contains("checksum"),
        "{text}"
    );

    write(
        &guests,
        "b.toml",
        "[good]\nkind = \"path\"\npath = \"/x\"\n",
    );
    let err = Catalog::load(&guests).unwrap_err();
    assert!(
        matches!(err, ArtifactError::DuplicateArtifact { .. }),
        "{err}"
    );

    write(
        &guests,
        "b.toml",
        "[escape]\nkind = \"command\"\ncommand = [\"true\"]\noutputs = [\"../x\"]\n",
    );
    let err = Catalog::load(&guests).unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");
}

/// `Catalog::can_produce` answers from the cache alone: a url artifact whose pinned download is
/// cached can be unpacked again offline; an unpinned one whose files are gone cannot; a path
/// artifact can if its file exists. Nothing is downloaded or built to find out.
#[test]
fn can_produce_answers_from_the_cache_without_producing() {
    let server = Server::start();
    server.put("guest.zip", zip_bytes(&[("kernel.bin", b"KERNEL")]));
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "net.toml",
        &format!(
            "[zipped]\nkind = \"url\"\nurl = \"{}\"\narchive = \"zip\"\nfiles = {{ kernel = \"kernel.bin\" }}\n\n\
             [fw]\nkind = \"path\"\npath = \"fw.bin\"\n",
            server.url("guest.zip")
        ),
    );
    let cache = tmp.path().join("cache");
    let mut offline = options(&cache, LockMode::Lenient);
    offline.network = Network::Offline;
    let can = |name: &str| {
        Catalog::load(&guests)
            .unwrap()
            .can_produce(name, &offline)
            .unwrap()
    };
    assert!(!can("zipped"), "nothing cached");
    assert!(!can("fw"), "no such file");
    write(&guests, "fw.bin", "FW");
    assert!(can("fw"));
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("zipped", &options(&cache, LockMode::Lenient))
        .unwrap();
    assert!(can("zipped"), "materialized");
    std::fs::remove_dir_all(cache.join("zipped")).unwrap();
    assert!(
        !can("zipped"),
        "unpinned: the download in the cache cannot be told from any other"
    );
    pin(&guests, "zipped", resolved.entry);
    assert!(can("zipped"), "pinned and its download is cached");
    assert_eq!(server.requests(), 1, "asking downloads nothing");
    assert!(!cache.join("zipped").exists(), "asking unpacks nothing");
    let again = Catalog::load(&guests)
        .unwrap()
        .resolve("zipped", &offline)
        .unwrap();
    assert_eq!(again.status, LockStatus::Locked);
}

/// A mistake in a recipe file (bad TOML, an unknown field, a bad value) is the definition's
/// fault: the trial that needs the catalog fails (FAIL, not retried), it is not INFRA.
#[test]
fn a_malformed_recipe_fails_the_trial_as_a_definition_mistake() {
    let cases = [
        ("syntax", "bad.toml", "[blob\nkind = \"url\"\n"),
        (
            "field",
            "bad.toml",
            "[blob]\nkind = \"url\"\nurl = \"https://x.test/b.bin\"\nchecksum = \"x\"\n",
        ),
        (
            "value",
            "bad.toml",
            "[blob]\nkind = \"url\"\nurl = \"ftp://x.test/b.bin\"\n",
        ),
        (
            "duplicate",
            "bad.toml",
            "[selftest-x]\nkind = \"path\"\npath = \"/x\"\n\n[blob]\nkind = \"path\"\npath = \"/y\"\n",
        ),
        ("lock", "guests.lock", "<<<<<<< HEAD\nversion = 1\n"),
    ];
    for (what, file, text) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "guests/blob.toml",
            "[blob]\nkind = \"path\"\npath = \"/nonexistent/b.bin\"\nfile = \"b.bin\"\n",
        );
        write(tmp.path(), &format!("guests/{file}"), text);
        write(
            tmp.path(),
            "guests/other.toml",
            "[selftest-x]\nkind = \"path\"\npath = \"/x\"\n",
        );
        let config = write(
            tmp.path(),
            "vm-configs/t.toml",
            "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:blob/b.bin\"\n",
        );
        let mut settings = vmharness::settings::Settings::defaults(tmp.path());
        settings.artifacts = options(&tmp.path().join("cache"), LockMode::Lenient);
        settings.infra_retries = 3;
        let loaded = vmharness::config::load(&config).unwrap();
        let resolver = vmharness::run::Resolver::from_settings(&settings);
        let Err(failed) = vmharness::suite::run_trial_with(&loaded, &resolver, &settings) else {
            panic!("{what}: a malformed recipe must fail the trial");
        };
        let message = format!("{failed:?}");
        assert!(message.contains("FAIL t:"), "{what}: {message}");
        assert!(
            message.contains(file) || message.contains("other.toml"),
            "{what}: {message}"
        );
        let record = std::fs::read_to_string(
            vmharness::run::logs::latest_dir(&settings.logs_dir(), "t").join("result.toml"),
        )
        .unwrap();
        assert!(record.contains("outcome = \"FAIL\""), "{what}: {record}");
    }
}

/// Outside CI the first resolve of an artifact the lock does not pin records it (creating
/// guests.lock), later resolves verify against it; in CI the same repo fails with the exact
/// command of the frontend in use.
#[test]
fn first_use_records_the_lock_and_ci_names_the_frontends_command() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "fw.toml",
        "[fw]\nkind = \"path\"\npath = \"fw.bin\"\n",
    );
    write(&guests, "fw.bin", "FIRMWARE");
    let lock_file = guests.join("guests.lock");
    let cache = tmp.path().join("cache");

    for cli in ["cargo xtask", "vmharness"] {
        let mut ci = options(&cache, LockMode::Locked);
        ci.cli = cli.to_string();
        let err = Catalog::load(&guests)
            .unwrap()
            .resolve("fw", &ci)
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with(&format!("(no entry); run `{cli} guests lock`")),
            "{err}"
        );
        assert!(!lock_file.exists(), "CI must not write the lock");
    }

    let first_use = options(&cache, LockMode::FirstUse);
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &first_use)
        .unwrap();
    assert_eq!(
        resolved.status,
        LockStatus::Recorded {
            lock_file: lock_file.clone()
        }
    );
    let catalog = Catalog::load(&guests).unwrap();
    assert_eq!(catalog.lock().get("fw"), Some(&resolved.entry));
    let again = catalog.resolve("fw", &first_use).unwrap();
    assert_eq!(again.status, LockStatus::Locked);
    let ci = catalog
        .resolve("fw", &options(&cache, LockMode::Locked))
        .unwrap();
    assert_eq!(
        ci.status,
        LockStatus::Locked,
        "the recorded lock satisfies CI"
    );

    // A pinned artifact whose bytes changed is still a mismatch, never re-recorded.
    write(&guests, "fw.bin", "TAMPERED");
    let err = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &first_use)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
}

/// Lenient (`VMHARNESS_LOCK_FIRST_USE=0`) keeps the lock file as it is.
#[test]
fn lenient_never_writes_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "fw.toml",
        "[fw]\nkind = \"path\"\npath = \"fw.bin\"\n",
    );
    write(&guests, "fw.bin", "FIRMWARE");
    let resolved = Catalog::load(&guests)
        .unwrap()
        .resolve("fw", &options(&tmp.path().join("cache"), LockMode::Lenient))
        .unwrap();
    assert!(matches!(resolved.status, LockStatus::Unlocked { .. }));
    assert!(!guests.join("guests.lock").exists());
}

/// The listing-time "not cached" reason names the fetch command of the frontend in use.
#[test]
fn a_missing_download_names_the_frontends_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "blob.toml",
        "[blob]\nkind = \"url\"\nurl = \"https://release.example.invalid/blob.bin\"\n",
    );
    let config = write(
        &tmp.path().join("vm-configs"),
        "blob-aarch64.toml",
        "arch = \"aarch64\"\n[qemu]\nkernel = \"artifact:blob/blob.bin\"\n",
    );
    let loaded = vmharness::config::load(&config).unwrap();
    for cli in ["cargo xtask", "vmharness"] {
        let mut settings = vmharness::settings::Settings::defaults(tmp.path());
        settings.artifacts.cli = cli.to_string();
        let check = vmharness::suite::availability::Check::new(&settings)
            .with_catalog(Catalog::load(&guests).unwrap());
        let missing: Vec<String> = check
            .missing_inputs(&loaded)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            missing,
            [format!("-kernel: artifact `blob` needs the network and is not cached (`{cli} guests fetch blob`)")]
        );
    }
}
