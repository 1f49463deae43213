//! Guest architectures and their per-arch QEMU defaults, kept in one table, and the machine
//! facts every layer names: the accelerator asked for ([`AccelChoice`]) and used ([`Accel`],
//! [`HOST_CPU`]) and a QEMU release ([`QemuVersion`]).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A guest architecture vmharness can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit x86 (`qemu-system-x86_64`).
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit Arm (`qemu-system-aarch64`).
    Aarch64,
    /// 64-bit RISC-V (`qemu-system-riscv64`).
    Riscv64,
}

/// How a guest tells QEMU to exit with a status code, and how to read that status back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDevice {
    /// x86 `isa-debug-exit` at port 0xf4: QEMU exits with `(code << 1) | 1`.
    IsaDebugExit,
    /// Arm semihosting `SYS_EXIT`: QEMU exits with the guest's code.
    Semihosting,
    /// RISC-V `sifive_test` (always present on `-M virt`): QEMU exits with the guest's code.
    SifiveTest,
}

impl ExitDevice {
    /// The device's name, as reports and `--list --verbose` show it.
    pub fn name(self) -> &'static str {
        match self {
            ExitDevice::IsaDebugExit => "isa-debug-exit",
            ExitDevice::Semihosting => "semihosting",
            ExitDevice::SifiveTest => "sifive_test",
        }
    }

    /// QEMU arguments that enable this exit channel.
    pub(crate) fn qemu_args(self) -> &'static [&'static str] {
        match self {
            ExitDevice::IsaDebugExit => &["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
            ExitDevice::Semihosting => &["-semihosting"],
            ExitDevice::SifiveTest => &[],
        }
    }

    /// The guest's exit code for a QEMU exit status, where the channel encodes one.
    ///
    /// For `isa-debug-exit` an even status (QEMU's own exit, e.g. 0 after poweroff) means the
    /// guest did not use the device; it is reported as is.
    pub(crate) fn guest_code(self, qemu_status: i32) -> i32 {
        match self {
            ExitDevice::IsaDebugExit if qemu_status & 1 == 1 => qemu_status >> 1,
            _ => qemu_status,
        }
    }
}

/// Per-architecture defaults: one row of the arch table.
#[derive(Debug, Clone, Copy)]
pub struct ArchSpec {
    /// QEMU system emulator binary name.
    pub qemu_binary: &'static str,
    /// Default `-M` machine.
    pub machine: &'static str,
    /// Default `-cpu` under TCG.
    pub tcg_cpu: &'static str,
    /// Default `-cpu` under KVM.
    pub kvm_cpu: &'static str,
    /// Default guest memory (`-m`).
    pub memory: &'static str,
    /// How the in-tree test guests exit (added when a config sets `qemu.exit_device = true`).
    pub exit_device: ExitDevice,
    /// Whether a config that does not set `qemu.exit_device` gets the exit device. Not on
    /// aarch64: semihosting also gives the guest the host's files (relative to QEMU's
    /// working directory), so only a guest that asks for it gets it.
    pub exit_device_by_default: bool,
}

impl Arch {
    /// All supported architectures.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64];

    /// The arch table row for this architecture.
    pub fn spec(self) -> &'static ArchSpec {
        match self {
            Arch::X86_64 => &ArchSpec {
                qemu_binary: "qemu-system-x86_64",
                machine: "q35",
                tcg_cpu: "max",
                kvm_cpu: "host",
                memory: "256M",
                exit_device: ExitDevice::IsaDebugExit,
                exit_device_by_default: true,
            },
            Arch::Aarch64 => &ArchSpec {
                qemu_binary: "qemu-system-aarch64",
                machine: "virt",
                tcg_cpu: "cortex-a57",
                kvm_cpu: "host",
                memory: "256M",
                exit_device: ExitDevice::Semihosting,
                exit_device_by_default: false,
            },
            Arch::Riscv64 => &ArchSpec {
                qemu_binary: "qemu-system-riscv64",
                machine: "virt",
                tcg_cpu: "rv64",
                kvm_cpu: "host",
                memory: "256M",
                exit_device: ExitDevice::SifiveTest,
                exit_device_by_default: true,
            },
        }
    }

    /// The canonical name, as used in config files and test names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The architecture this process runs on, if it is one we emulate.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

impl fmt::Display for ExitDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "riscv64" => Ok(Arch::Riscv64),
            other => Err(format!(
                "unknown arch `{other}` (expected x86_64, aarch64 or riscv64)"
            )),
        }
    }
}

/// A concrete accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` takes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// The CPU model that only KVM can provide.
pub const HOST_CPU: &str = "host";

/// A QEMU release, from its `--version` line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major, minor and micro numbers.
    pub numbers: (u32, u32, u32),
    /// The whole first line (`QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)`).
    pub line: String,
}

impl QemuVersion {
    /// Parses QEMU's `--version` output.
    pub fn parse(output: &str) -> Option<QemuVersion> {
        let line = output.lines().next()?.trim();
        let rest = line.split("version ").nth(1)?;
        let number = rest.split_whitespace().next()?;
        let mut parts = number.split('.').map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let micro = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion {
            numbers: (major, minor, micro),
            line: line.to_string(),
        })
    }

    /// Whether this is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.numbers.0, self.numbers.1) >= (major, minor)
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, micro) = self.numbers;
        write!(f, "{major}.{minor}.{micro}")
    }
}

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM when the probe says it works and the guest arch is the host arch, else TCG.
    #[default]
    Auto,
    /// KVM or an infrastructure failure.
    Kvm,
    /// Always TCG (software emulation).
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(format!(
                "unknown accel `{other}` (expected auto, kvm or tcg)"
            )),
        }
    }
}

impl fmt::Display for AccelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelChoice::Auto => "auto",
            AccelChoice::Kvm => "kvm",
            AccelChoice::Tcg => "tcg",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_debug_exit_decodes_guest_code() {
        assert_eq!(ExitDevice::IsaDebugExit.guest_code(1), 0);
        assert_eq!(ExitDevice::IsaDebugExit.guest_code(7), 3);
        assert_eq!(ExitDevice::IsaDebugExit.guest_code(0), 0);
        assert_eq!(ExitDevice::SifiveTest.guest_code(3), 3);
    }

    #[test]
    fn arch_names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>(), Ok(arch));
        }
        assert!("mips".parse::<Arch>().is_err());
    }
}
