//! The NimbOS suite's configs (`vm-configs/nimbos-*.toml`) against what the real NimbOS v0.7 and
//! AxVisor images do.
//!
//! The configs' expectations were read from the real images' consoles. The pinned facts below
//! are the ones that made the earlier configs fail on every path: the `_usertests` build has no
//! shell, AxVisor at the suite's commit is GICv2-only and a single-CPU build, the PCI build finds
//! its disk on `virtio-blk-pci` only, and QEMU 7.2 has no riscv64 `max` CPU.
//!
//! The real runs need the images: the hypervisor from `VMHARNESS_HYPERVISOR_AARCH64` and NimbOS
//! from the artifact cache (the release, or a labelled local build imported with `cargo xtask
//! guests import --local-build`). `.ci/run` provides both from `../shared/fixtures`. Without them
//! the real runs fail under `CI=true` and say what is missing elsewhere.

use std::path::PathBuf;

use vmharness::config::LoadedConfig;
use vmharness::outcome::Outcome;
use vmharness::plan::Plan;
use vmharness::qemu::{Accel, QemuVersion};
use vmharness::run::{self, Resolver, RunOptions};
use vmharness::settings::Settings;

/// NimbOS v0.7's usertests, in the order `usertests` runs them.
const USERTESTS: [&str; 13] = [
    "exit",
    "fantastic_text",
    "forktest",
    "forktest2",
    "forktest_simple",
    "hello_world",
    "matrix",
    "sleep",
    "sleep_simple",
    "stack_overflow",
    "yield",
    "thread_simple",
    "cyclictest",
];

const ARCHES: [&str; 3] = ["x86_64", "aarch64", "riscv64"];

fn root() -> PathBuf {
    vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .root
}

fn load(name: &str) -> LoadedConfig {
    let path = root().join("vm-configs").join(format!("{name}.toml"));
    vmharness::config::load(&path).unwrap_or_else(|err| panic!("{name}: {err}"))
}

fn plan(loaded: &LoadedConfig) -> Plan {
    Plan::new(loaded, &Settings::defaults(root())).expect("plan")
}

fn kernel_or_loader_refs(loaded: &LoadedConfig) -> Vec<String> {
    let plan = plan(loaded);
    plan.inputs
        .iter()
        .map(|i| i.reference.to_string())
        .collect()
}

fn case_names(loaded: &LoadedConfig) -> Vec<String> {
    loaded.config.cases.iter().map(|c| c.name.clone()).collect()
}

#[test]
fn standalone_configs_judge_the_usertests_build_without_a_shell() {
    for arch in ARCHES {
        let loaded = load(&format!("nimbos-standalone-{arch}"));
        let refs = kernel_or_loader_refs(&loaded);
        assert!(
            refs.contains(&format!("artifact:nimbos-{arch}/nimbos-{arch}.bin")),
            "{arch}: {refs:?}"
        );
        let console = &loaded.config.console;
        let banner: Vec<&str> = console.banner.iter().map(|p| p.0.as_str()).collect();
        assert!(
            !banner.iter().any(|p| p.contains("Rust user shell")),
            "{arch}: the usertests build has no shell: {banner:?}"
        );
        assert!(
            banner
                .last()
                .is_some_and(|p| p.contains("usertests passed!")),
            "{arch}: {banner:?}"
        );
        assert!(
            console.steps.is_empty(),
            "{arch}: nothing to type into: {:?}",
            console.steps
        );
        assert!(
            console.success.is_none(),
            "{arch}: it powers off; QEMU's exit 0 is the verdict"
        );
        assert!(
            loaded
                .config
                .results
                .as_ref()
                .is_some_and(|r| r.cases.is_some()),
            "{arch}: sub-results"
        );
    }
}

#[test]
fn shell_and_axvisor_configs_have_one_case_per_usertest_on_the_shell_build() {
    for name in ARCHES
        .iter()
        .flat_map(|arch| [format!("nimbos-shell-{arch}"), format!("nimbos-{arch}")])
    {
        let loaded = load(&name);
        assert_eq!(case_names(&loaded), USERTESTS, "{name}");
        let arch = loaded.config.arch.name();
        let refs = kernel_or_loader_refs(&loaded);
        assert!(
            refs.contains(&format!("artifact:nimbos-shell-{arch}/nimbos-{arch}.bin")),
            "{name}: {refs:?}"
        );
        let overflow = loaded
            .config
            .cases
            .iter()
            .find(|c| c.name == "stack_overflow")
            .unwrap();
        assert!(
            format!("{:?}", overflow.steps).contains("exited with code -1"),
            "{name}: {:?}",
            overflow.steps
        );
    }
}

#[test]
fn the_release_zips_are_named_by_build() {
    let catalog = vmharness::artifact::Catalog::load(&root().join("guests")).unwrap();
    for arch in ARCHES {
        for (artifact, zip) in [
            (
                format!("nimbos-{arch}"),
                format!("v0.7/{arch}_usertests.zip"),
            ),
            (format!("nimbos-shell-{arch}"), format!("v0.7/{arch}.zip")),
        ] {
            let recipe = catalog.recipe(&artifact).unwrap();
            let text = format!("{:?}", recipe.source);
            assert!(text.contains(&zip), "{artifact}: {text}");
        }
    }
}

/// AxVisor at the suite's commit panics right after `Initialize GICv2...` on a GICv3 machine,
/// and is a single-CPU build: the config must say `gic-version=2` and one CPU.
#[test]
fn axvisor_aarch64_is_gicv2_one_cpu_pci() {
    let loaded = load("nimbos-aarch64");
    let plan = plan(&loaded);
    assert!(
        plan.qemu.machine.contains("gic-version=2"),
        "{}",
        plan.qemu.machine
    );
    assert!(plan.qemu.machine.contains("virtualization=on"));
    assert_eq!(plan.qemu.smp, Some(1));
    let disk = plan.disk.as_ref().expect("a disk");
    assert_eq!(disk.attach.driver(), "virtio-blk-pci");
}

/// QEMU 7.2 has no riscv64 `max`; from 8.0 on the config takes AxVisor's CI CPU.
#[test]
fn axvisor_riscv64_cpu_follows_the_qemu_release() {
    let loaded = load("nimbos-riscv64");
    let plan = plan(&loaded);
    assert_eq!(plan.qemu.smp, Some(1));
    let on = |line: &str| plan.cpu_for(Accel::Tcg, Some(&QemuVersion::parse(line).unwrap()));
    assert_eq!(on("QEMU emulator version 7.2.19"), "rv64");
    assert_eq!(on("QEMU emulator version 8.2.2"), "max,sstc=on");
    assert_eq!(on("QEMU emulator version 10.0.2"), "max,sstc=on");
    assert_eq!(
        plan.disk.as_ref().expect("a disk").attach.driver(),
        "virtio-blk-pci"
    );
}

/// x86_64 AxVisor needs VMX: the config says so, and is ignored with that reason where KVM
/// cannot run it.
#[test]
fn axvisor_x86_64_needs_kvm() {
    let loaded = load("nimbos-x86_64");
    let why = loaded.config.needs_kvm.as_deref().expect("needs_kvm");
    assert!(why.contains("VMX"), "{why}");
}

/// Whether the real images are here; under `CI=true` they must be.
fn hypervisor_aarch64() -> Option<PathBuf> {
    match std::env::var_os("VMHARNESS_HYPERVISOR_AARCH64") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ if std::env::var_os("CI").is_some_and(|v| v == "true") => {
            panic!("CI=true and VMHARNESS_HYPERVISOR_AARCH64 is not set: .ci/run sets it")
        }
        _ => {
            eprintln!(
                "VMHARNESS_HYPERVISOR_AARCH64 is not set: the real AxVisor run is not checked"
            );
            None
        }
    }
}

/// The config as it was before (`gic-version=3`) fails for real, fast, on AxVisor's own panic,
/// and the config as it is passes a case: the pin above is what the image needs.
#[test]
fn axvisor_aarch64_on_gicv3_is_caught_and_gicv2_passes() {
    let Some(_) = hypervisor_aarch64() else {
        return;
    };
    let config = root().join("vm-configs/nimbos-aarch64.toml");
    let run_case = |overrides: &[String]| {
        let loaded = vmharness::config::load_with_overrides(&config, overrides).expect("loads");
        let logs = tempfile::tempdir().unwrap();
        let options = RunOptions {
            log_dir: Some(logs.path().join("run")),
            ..RunOptions::default()
        };
        run::run_case(&loaded, "hello_world", &Resolver::from_env(), options)
    };
    let gicv3 = run_case(&["qemu.machine=\"virt,virtualization=on,gic-version=3\"".into()]);
    let Outcome::Fail { reason } = &gicv3.outcome else {
        panic!("gic-version=3 must fail, got:\n{gicv3}");
    };
    assert!(reason.contains("panicked at"), "{reason}");
    let text = gicv3.to_string();
    assert!(text.contains("Unhandled synchronous exception"), "{text}");
    assert!(text.contains("Initialize GICv2"), "{text}");
    let gicv2 = run_case(&[]);
    assert!(
        matches!(gicv2.outcome, Outcome::Pass),
        "the config's own line must pass:\n{gicv2}"
    );
}
