//! A deliberately failing config (`failing/panics.toml`), run through the library: the verdict
//! is FAIL and the report says why, with what a user needs to act on it.

use std::path::Path;

#[test]
fn a_panic_line_fails_the_run_and_the_report_says_where() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("failing/panics.toml");
    let report = vmharness::run::run_file(&config).expect("the config loads");
    let text = report.to_string();
    assert_eq!(report.outcome.label(), "FAIL", "{text}");
    // The line that matched the panic pattern, the console before it, the QEMU command line
    // and the full log on disk.
    assert!(text.contains("panic pattern"), "{text}");
    assert!(text.contains("| hello: done"), "{text}");
    assert!(text.contains("| hello from an out-of-tree guest"), "{text}");
    assert!(text.contains("qemu-system-aarch64"), "{text}");
    let log = std::fs::read_to_string(&report.log_path).expect("the console log is kept");
    assert!(log.contains("hello: done"), "{log}");
}
