//! `cargo xtask guests` as a user meets it: expected errors are one message and its causes,
//! never a stack backtrace (also with `RUST_BACKTRACE=1`), and `guests list` shows inputs.

use std::process::Command;

mod support;

#[test]
fn expected_errors_print_as_messages_without_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("blob.toml"),
        "[blob]\nkind = \"url\"\nurl = \"https://example.invalid/blob.bin\"\n",
    )
    .unwrap();
    let cases: [&[&str]; 3] = [
        &["guests", "import", "no-such-artifact", "/nonexistent"],
        &["guests", "import", "blob", "/nonexistent/file.bin"],
        &["guests", "build", "no-such-artifact"],
    ];
    for args in cases {
        let output = Command::new(support::xtask())
            .args(args)
            .arg("--guests-dir")
            .arg(tmp.path())
            .env("RUST_BACKTRACE", "1")
            .env("VMHARNESS_CACHE", tmp.path().join("cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "{args:?} printed a backtrace: {stderr}"
        );
    }
}

#[test]
fn guests_list_shows_packages_and_locked_inputs() {
    let output = Command::new(support::xtask())
        .args(["guests", "list"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("package kernel: linux-image-arm64 (arm64, bookworm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("locked package kernel = linux-image-"),
        "{stdout}"
    );
}

/// `guests import --local-build` records a stand-in for a release that cannot be downloaded:
/// `fetch` uses it offline and says so, `list` shows it, `lock` never pins it, strict refuses it.
#[test]
fn a_local_build_is_used_labelled_and_never_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    std::fs::create_dir(&guests).unwrap();
    std::fs::write(
        guests.join("blob.toml"),
        "[blob]\nkind = \"url\"\nurl = \"https://release.example.invalid/v1/blob.bin\"\n\n\
         [fw]\nkind = \"path\"\npath = \"fw.bin\"\n",
    )
    .unwrap();
    std::fs::write(guests.join("fw.bin"), "FIRMWARE").unwrap();
    let built = tmp.path().join("built-from-source.bin");
    std::fs::write(&built, "BUILT FROM SOURCE").unwrap();
    let xtask = |args: &[&str]| {
        let output = Command::new(support::xtask())
            .args(["guests", "--guests-dir"])
            .arg(&guests)
            .args(args)
            .env("VMHARNESS_CACHE", tmp.path().join("cache"))
            .env("VMHARNESS_OFFLINE", "1")
            .env_remove("CI")
            .env_remove("VMHARNESS_LOCKED")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{args:?}: {text}");
        text
    };
    xtask(&["lock"]);
    let lock = std::fs::read(guests.join("guests.lock")).unwrap();

    let text = xtask(&["import", "--local-build", "blob", built.to_str().unwrap()]);
    assert!(text.contains("local build, not the release"), "{text}");
    assert!(text.contains("never pinned"), "{text}");
    let text = xtask(&["fetch", "blob"]);
    assert!(
        text.contains("local build, not the release") && text.contains("built-from-source.bin"),
        "{text}"
    );
    let text = xtask(&["list"]);
    assert!(text.contains("local build"), "{text}");
    xtask(&["lock"]);
    assert_eq!(
        std::fs::read(guests.join("guests.lock")).unwrap(),
        lock,
        "guests lock must not pin a local build"
    );
    let text = xtask(&["--locked=strict", "fetch", "blob"]);
    assert!(
        text.contains("unavailable") && text.contains("strict"),
        "{text}"
    );
}

/// Runs `cargo xtask guests --guests-dir <guests> <args>` offline with this cache; returns
/// (success, stdout + stderr).
fn guests_offline(
    guests: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
) -> (bool, String) {
    let output = Command::new(support::xtask())
        .args(["guests", "--guests-dir"])
        .arg(guests)
        .args(args)
        .env("VMHARNESS_CACHE", cache)
        .env("VMHARNESS_OFFLINE", "1")
        .env_remove("CI")
        .env_remove("VMHARNESS_LOCKED")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `guests lock` tells an unavailable artifact with an entry (kept) from one without (nothing
/// to keep, still not locked).
#[test]
fn guests_lock_says_whether_an_unavailable_artifact_has_an_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    std::fs::create_dir(&guests).unwrap();
    std::fs::write(
        guests.join("blob.toml"),
        "[blob]\nkind = \"url\"\nurl = \"https://release.example.invalid/blob.bin\"\n",
    )
    .unwrap();
    let line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("blob "))
            .unwrap_or_default()
            .to_string()
    };
    let (ok, text) = guests_offline(&guests, &tmp.path().join("empty-cache"), &["lock"]);
    assert!(ok, "{text}");
    let unpinned = line(&text);
    assert!(
        unpinned.contains("unavailable") && unpinned.contains("no entry"),
        "{text}"
    );
    assert!(
        !unpinned.contains("kept"),
        "there is no entry to keep: {text}"
    );

    let file = tmp.path().join("blob.bin");
    std::fs::write(&file, "BLOB").unwrap();
    let (ok, text) = guests_offline(
        &guests,
        &tmp.path().join("import-cache"),
        &["import", "blob", file.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let (ok, text) = guests_offline(&guests, &tmp.path().join("empty-cache"), &["lock"]);
    assert!(ok, "{text}");
    assert!(line(&text).contains("entry kept as is"), "{text}");
}

/// `guests list` shows what the lock pins: each output's sha256 and a download's.
#[test]
fn guests_list_shows_pinned_sha256s() {
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    std::fs::create_dir(&guests).unwrap();
    std::fs::write(
        guests.join("blob.toml"),
        "[blob]\nkind = \"url\"\nurl = \"https://release.example.invalid/blob.zip\"\narchive = \"zip\"\nfiles = { \"kernel.bin\" = \"k\" }\n",
    )
    .unwrap();
    let zip = tmp.path().join("blob.zip");
    std::fs::write(tmp.path().join("k"), "KERNEL").unwrap();
    let status = Command::new("zip")
        .current_dir(tmp.path())
        .args(["-q", "blob.zip", "k"])
        .status()
        .expect("zip (package zip)");
    assert!(status.success());
    let cache = tmp.path().join("cache");
    let (ok, text) = guests_offline(&guests, &cache, &["import", "blob", zip.to_str().unwrap()]);
    assert!(ok, "{text}");
    let lock = std::fs::read_to_string(guests.join("guests.lock")).unwrap();
    let pinned = |field: &str| {
        lock.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split('"').nth(3).or_else(|| l.split('"').nth(1)))
            .unwrap()
            .to_string()
    };
    let download = pinned("download = ");
    let output = pinned("\"kernel.bin\" = ");
    let (ok, text) = guests_offline(&guests, &cache, &["list"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("pinned download sha256 {download}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("pinned kernel.bin sha256 {output}")),
        "{text}"
    );
}

/// A repository with a recipe and no guests.lock, met through each frontend: in CI resolving
/// fails and `guests lock` refuses, both naming that frontend's command; that command (run
/// outside CI) writes the lock, and CI passes. Outside CI the first fetch writes the lock itself.
#[test]
fn without_a_lock_ci_names_the_frontends_command_and_first_use_writes_it() {
    let bins = support::cli_bins();
    let frontends: [(std::path::PathBuf, &[&str], &str); 3] = [
        (support::xtask().clone(), &[], "cargo xtask"),
        (bins.join("vmharness"), &[], "vmharness"),
        (
            bins.join("cargo-vmharness"),
            &["vmharness"],
            "cargo vmharness",
        ),
    ];
    for (binary, prefix, cli) in frontends {
        let tmp = tempfile::tempdir().unwrap();
        let guests = tmp.path().join("guests");
        std::fs::create_dir(&guests).unwrap();
        std::fs::write(
            guests.join("fw.toml"),
            "[fw]\nkind = \"path\"\npath = \"fw.bin\"\n",
        )
        .unwrap();
        std::fs::write(guests.join("fw.bin"), "FIRMWARE").unwrap();
        let run = |args: &[&str], ci: bool| {
            let mut command = Command::new(&binary);
            command
                .args(prefix)
                .args(args)
                .env("VMHARNESS_ROOT", tmp.path())
                .env("VMHARNESS_CACHE", tmp.path().join("cache"))
                .env_remove("VMHARNESS_LOCKED")
                .env_remove("VMHARNESS_LOCK_FIRST_USE")
                .env_remove("VMHARNESS_CLI");
            if ci {
                command.env("CI", "true");
            } else {
                command.env_remove("CI");
            }
            let output = command.output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            (output.status.success(), text)
        };
        let hint = format!("run `{cli} guests lock`");
        let (ok, text) = run(&["guests", "fetch"], true);
        assert!(!ok && text.contains(&hint), "{cli}, CI fetch: {text}");
        let (ok, text) = run(&["guests", "lock"], true);
        assert!(!ok && text.contains(&hint), "{cli}, CI lock: {text}");
        assert!(
            !guests.join("guests.lock").exists(),
            "{cli}: CI wrote the lock"
        );
        let (ok, text) = run(&["guests", "lock"], false);
        assert!(
            ok && text.contains("fw") && text.contains("added"),
            "{cli}: {text}"
        );
        let (ok, text) = run(&["guests", "fetch"], true);
        assert!(
            ok && text.contains("verified"),
            "{cli}, CI after lock: {text}"
        );

        std::fs::remove_file(guests.join("guests.lock")).unwrap();
        let (ok, text) = run(&["guests", "fetch"], false);
        assert!(
            ok && text.contains("recorded in") && text.contains("on first use"),
            "{cli}, first use: {text}"
        );
        let lock = std::fs::read_to_string(guests.join("guests.lock")).unwrap();
        assert!(lock.contains("name = \"fw\""), "{lock}");
        let (ok, text) = run(&["guests", "fetch"], true);
        assert!(
            ok && text.contains("verified"),
            "{cli}, CI after first use: {text}"
        );
    }
}
