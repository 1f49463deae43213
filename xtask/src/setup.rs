//! `cargo xtask setup`: make sure the host has what the test suite needs.
//!
//! Missing Debian packages are installed with apt-get when running as root or in CI (the exact
//! command is printed first); otherwise the command is printed and the run stops.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// A host requirement: a file that must exist and the Debian package that provides it.
struct Need {
    path: &'static str,
    package: &'static str,
}

const NEEDS: &[Need] = &[
    Need {
        path: "/usr/bin/qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    Need {
        path: "/usr/bin/qemu-system-aarch64",
        package: "qemu-system-arm",
    },
    Need {
        path: "/usr/bin/qemu-system-riscv64",
        package: "qemu-system-misc",
    },
    Need {
        path: "/usr/bin/clang",
        package: "clang",
    },
    Need {
        path: "/usr/bin/ld.lld",
        package: "lld",
    },
    Need {
        path: "/sbin/fsck.fat",
        package: "dosfstools",
    },
    Need {
        path: "/usr/bin/mcopy",
        package: "mtools",
    },
    Need {
        path: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
        package: "u-boot-qemu",
    },
    Need {
        path: "/usr/bin/cpio",
        package: "cpio",
    },
    Need {
        path: "/usr/bin/xz",
        package: "xz-utils",
    },
    Need {
        path: "/usr/sbin/sshd",
        package: "openssh-server",
    },
    Need {
        path: "/usr/bin/ssh",
        package: "openssh-client",
    },
];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Installs missing packages (root/CI) or explains how to.
pub fn run() -> anyhow::Result<()> {
    let mut missing: Vec<&str> = NEEDS
        .iter()
        .filter(|need| !Path::new(need.path).exists())
        .map(|need| need.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        println!("setup: all host packages present");
    } else {
        let install = format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        if !(is_root() || in_ci()) {
            bail!(
                "missing host packages: {}\nrun as root:\n  sudo sh -c '{install}'",
                missing.join(" ")
            );
        }
        let sudo = if is_root() { "" } else { "sudo " };
        println!("setup: installing missing packages: {sudo}sh -c '{install}'");
        let mut command = if is_root() {
            Command::new("sh")
        } else {
            let mut c = Command::new("sudo");
            c.arg("sh");
            c
        };
        let status = command
            .arg("-c")
            .arg(&install)
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get failed ({status}); run it by hand: {install}");
        }
    }
    apt_sources()
}

/// Foreign-architecture apt sources for the Linux guests' kernels and busybox.
fn apt_sources() -> anyhow::Result<()> {
    let script = vmharness::paths::workspace_root().join("guests/setup-apt.sh");
    if apt_sources_configured() {
        println!("setup: apt sources for arm64/riscv64 guest packages are configured");
        return Ok(());
    }
    if !(is_root() || in_ci()) {
        bail!(
            "the Linux guests need arm64/riscv64 apt sources; run as root: sudo sh {}",
            script.display()
        );
    }
    let sudo = !is_root();
    println!(
        "setup: configuring apt sources: {}sh {}",
        if sudo { "sudo " } else { "" },
        script.display()
    );
    let status = if sudo {
        Command::new("sudo").arg("sh").arg(&script).status()
    } else {
        Command::new("sh").arg(&script).status()
    }
    .context("running setup-apt.sh")?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

/// Whether `guests/setup-apt.sh` has already run on this host.
fn apt_sources_configured() -> bool {
    let foreign = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    foreign.lines().any(|a| a == "arm64")
        && foreign.lines().any(|a| a == "riscv64")
        && Path::new("/etc/apt/sources.list.d/vmharness-trixie-riscv64.sources").exists()
        && Path::new("/etc/apt/preferences.d/vmharness-trixie-riscv64").exists()
}
