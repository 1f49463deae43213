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
