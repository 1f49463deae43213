//! `setup`: make sure the host has what the test suite needs.
//!
//! Missing Debian packages are installed with apt-get when running as root or in CI (the exact
//! command is printed first); otherwise the command is printed and the run stops. The host's
//! apt sources are never changed: the Linux guests' packages come through a private apt
//! configuration (`vmharness::artifact::debian`). `test` and `qemu` both call [`run`].

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
    // The Linux guests' Debian packages are verified with Debian's keyring (a private apt
    // configuration; the host's apt sources are not touched).
    Need {
        path: "/usr/share/keyrings/debian-archive-keyring.gpg",
        package: "debian-archive-keyring",
    },
    Need {
        path: "/usr/bin/dpkg-deb",
        package: "dpkg",
    },
    // Tests: a local Debian archive (apt-ftparchive) and a self-signed https server (openssl).
    Need {
        path: "/usr/bin/apt-ftparchive",
        package: "apt-utils",
    },
    Need {
        path: "/usr/bin/openssl",
        package: "openssl",
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
    Ok(())
}
