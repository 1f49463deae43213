//! Built without the `artifacts` feature, vmharness has no artifact store: every key that takes
//! a file reports an `artifact:` reference as a definition error at that key, saying which
//! feature brings the store back, while path and `env:` references load as before.
//!
//! Run with `cargo test -p vmharness --no-default-features --test without_artifacts`.
#![cfg(not(feature = "artifacts"))]

use std::path::Path;

/// Every key of a VM config that names a host file, as (TOML, the line the reference is on).
const FILE_KEYS: &[(&str, usize)] = &[
    ("[qemu]\nkernel = \"{}\"\n", 3),
    ("[qemu]\nbios = \"{}\"\n", 3),
    ("[qemu]\ninitrd = \"{}\"\n", 3),
    ("[qemu]\nsymbols = \"{}\"\n", 3),
    ("[qemu]\npflash = [\"{}\"]\n", 3),
    ("[[qemu.loader]]\nfile = \"{}\"\naddr = 0x80000000\n", 3),
    (
        "[disk]\nsize = \"40M\"\n[[disk.entries]]\ndest = \"/a\"\nsource = \"{}\"\n",
        6,
    ),
];

fn load(
    dir: &Path,
    body: &str,
) -> Result<vmharness::config::LoadedConfig, vmharness::config::ConfigError> {
    let path = dir.join("t.toml");
    std::fs::write(&path, format!("arch = \"x86_64\"\n{body}")).unwrap();
    vmharness::config::load(&path)
}

#[test]
fn an_artifact_reference_is_a_definition_error_at_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (template, line) in FILE_KEYS {
        for reference in ["artifact:linux-x86_64/vmlinuz", "artifact:x", "artifact:"] {
            let body = template.replace("{}", reference);
            let err = load(tmp.path(), &body).expect_err(&body);
            let text = err.to_string();
            assert!(
                text.contains(
                    "this build of vmharness has no artifact store: enable the `artifacts` feature"
                ),
                "{body}: {text}"
            );
            assert!(text.contains(&format!("`{reference}`")), "{body}: {text}");
            let location = err.location().unwrap_or_else(|| panic!("{body}: {text}"));
            assert_eq!(location.line, Some(*line), "{body}: {text}");
        }
    }
}

#[test]
fn paths_and_env_references_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    for (template, _) in FILE_KEYS {
        for reference in ["bin/kernel.elf", "/abs/kernel.elf", "env:MY_KERNEL"] {
            let body = template.replace("{}", reference);
            load(tmp.path(), &body).unwrap_or_else(|e| panic!("{body}: {e}"));
        }
    }
}
