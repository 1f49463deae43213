//! Shared helpers for integration tests that boot the in-tree selftest guests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vmharness::arch::Arch;
use vmharness::config::LoadedConfig;
use vmharness::outcome::Report;
use vmharness::run::{self, Resolver, RunOptions};
use vmharness::settings::Settings;

/// QEMU arguments that select a selftest scenario (fw_cfg; riscv64 `virt` in QEMU 7.2 has no
/// fw_cfg, so the guest reads its command line there).
pub fn scenario_args(arch: Arch, scenario: &str) -> String {
    match arch {
        Arch::Riscv64 => format!("append = {scenario:?}\n"),
        _ => format!("args = [\"-fw_cfg\", \"name=opt/vmharness/scenario,string={scenario}\"]\n"),
    }
}

/// Writes a config for the selftest guest running `scenario`, with `rest` appended (TOML).
/// The guest exits through its arch's exit device (aarch64: semihosting, asked for).
pub fn selftest_config(dir: &Path, name: &str, arch: Arch, scenario: &str, rest: &str) -> PathBuf {
    let text = format!(
        "arch = \"{arch}\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:selftest-{arch}/selftest.elf\"\nexit_device = true\n{}{rest}",
        scenario_args(arch, scenario)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write test config");
    path
}

/// Loads and runs a config with logs under `dir/logs`.
pub fn run_config(path: &Path) -> Report {
    run_config_with(path, settings())
}

/// The environment's settings (the test process's environment must be usable).
pub fn settings() -> Settings {
    Settings::from_env().expect("usable environment")
}

/// Loads and runs a config with explicit settings, logs under `dir/logs`.
pub fn run_config_with(path: &Path, settings: Settings) -> Report {
    let loaded: LoadedConfig = vmharness::config::load(path).expect("config loads");
    let log_dir = path.parent().unwrap().join("logs").join(&loaded.name);
    let resolver = Resolver::from_settings(&settings);
    let options = RunOptions {
        log_dir: Some(log_dir),
        settings: Some(settings),
        ..RunOptions::default()
    };
    run::run(&loaded, &resolver, options)
}

/// Loads `config` and runs its `[[case]]` named `case` with `settings`.
pub fn run_case(config: &Path, case: &str, settings: &Settings) -> Report {
    let loaded = vmharness::config::load(config).expect("config loads");
    let resolver = Resolver::from_settings(settings);
    let options = RunOptions {
        settings: Some(settings.clone()),
        ..RunOptions::default()
    };
    run::run_case(&loaded, case, &resolver, options)
}

/// Writes a "QEMU" that is a shell script running `body` then `exit 0`, and a config using it
/// (x86_64, no exit device) with `rest` appended; returns the config.
pub fn fake_qemu_config(dir: &Path, name: &str, body: &str, rest: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("fake-qemu");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\nexit 0\n")).expect("write fake QEMU");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("make fake QEMU executable");
    let path = dir.join(format!("{name}.toml"));
    let config = format!(
        "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\nbinary = {:?}\nexit_device = false\n{rest}",
        script.display().to_string()
    );
    std::fs::write(&path, config).expect("write fake QEMU config");
    path
}
