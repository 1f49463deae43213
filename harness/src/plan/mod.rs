//! [`Plan`]: one loaded config and the settings turned into what a run needs, in typed form —
//! the QEMU settings before files are resolved, every file input with where it is used, the
//! deadlines with their one scaling rule, and the judge's expectations.

mod deadlines;
mod expectations;

use crate::arch::{Accel, Arch, ExitDevice, QemuVersion, HOST_CPU};
use regex::Regex;

use crate::config::{AccelChoice, CaseSpec, CpuSince, LoadedConfig, Location, Step};
use crate::disk::DiskSpec;
use crate::fileref::FileRef;
use crate::settings::Settings;

pub(crate) use deadlines::deadline_after;
pub use deadlines::{Deadlines, Timeouts};
pub use expectations::Expectations;
pub(crate) use expectations::DEFAULT_PANIC_PATTERNS;

/// A config that cannot run as written (class Fail: retrying cannot fix it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `cpu = "host"` where the run uses TCG.
    #[error("{location}: `qemu.cpu = \"host\"` needs KVM, but this run uses TCG ({why}): drop `cpu` or run where KVM works")]
    HostCpuUnderTcg {
        /// Where `cpu` is set.
        location: Location,
        /// Why TCG (an override, or the KVM probe's answer).
        why: String,
    },
}

/// Which part of a `[[case]]` run a judge watches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CasePart<'a> {
    /// Boot to `[ready]`, to save the state there.
    Boot,
    /// Boot to `[ready]`, then the case (no saved state).
    Cold(&'a CaseSpec),
    /// The case alone, in a guest restored at `[ready]`.
    Restored(&'a CaseSpec),
}

/// Where a file input is used: which QEMU option or disk entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputUse {
    /// `bios`.
    Bios,
    /// `kernel`.
    Kernel,
    /// `initrd`.
    Initrd,
    /// `pflash`, by index.
    Pflash(usize),
    /// `[[qemu.loader]]`, by index.
    Loader(usize),
    /// `symbols`: not given to QEMU, read by the harness.
    Symbols,
    /// A `[disk]` entry, by its destination.
    Disk(String),
}

impl std::fmt::Display for InputUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputUse::Bios => f.write_str("-bios"),
            InputUse::Kernel => f.write_str("-kernel"),
            InputUse::Initrd => f.write_str("-initrd"),
            InputUse::Pflash(index) => write!(f, "-pflash #{}", index + 1),
            InputUse::Loader(index) => write!(f, "[[qemu.loader]] #{}", index + 1),
            InputUse::Symbols => f.write_str("symbols"),
            InputUse::Disk(dest) => write!(f, "[disk] {dest}"),
        }
    }
}

/// One file the config needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Where it is used.
    pub used_as: InputUse,
    /// The reference as written.
    pub reference: FileRef,
}

/// QEMU settings before the accelerator is chosen and files are resolved.
#[derive(Debug, Clone)]
pub struct QemuPlan {
    /// The binary as configured (a name on `PATH` or a path).
    pub binary: String,
    /// `-M`.
    pub machine: String,
    /// `-cpu` as configured; unset takes the arch's default for the accelerator.
    pub cpu: Option<String>,
    /// `-cpu` for newer QEMU releases (`[qemu] cpu_since`), oldest first.
    pub cpu_since: Vec<CpuSince>,
    /// `-m`.
    pub memory: String,
    /// `-smp`.
    pub smp: Option<u32>,
    /// `-append`.
    pub append: Option<String>,
    /// The arch's exit channel, unless the config turned it off.
    pub exit_device: Option<ExitDevice>,
    /// The config's `args`, then a frontend's extra arguments.
    pub extra: Vec<String>,
}

/// Everything a run of one config needs, short of resolved files and the accelerator.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config.
    pub loaded: LoadedConfig,
    /// Guest architecture.
    pub arch: Arch,
    /// The accelerator choice after overrides (frontend, then `VMHARNESS_ACCEL`, then config).
    pub accel: AccelChoice,
    /// Which override decided `accel`, for messages.
    pub accel_source: &'static str,
    /// QEMU settings.
    pub qemu: QemuPlan,
    /// Every file input, in config order.
    pub inputs: Vec<Input>,
    /// The disk to build, if any.
    pub disk: Option<DiskSpec>,
    /// Deadlines before scaling.
    pub deadlines: Deadlines,
    /// `ignore = "why"`.
    pub ignore: Option<String>,
}

impl Plan {
    /// The plan for `loaded` under `settings`.
    pub fn new(loaded: &LoadedConfig, settings: &Settings) -> Result<Plan, PlanError> {
        let config = &loaded.config;
        let spec = config.arch.spec();
        let qemu = &config.qemu;
        let mut inputs: Vec<Input> = [
            (InputUse::Bios, &qemu.bios),
            (InputUse::Kernel, &qemu.kernel),
            (InputUse::Initrd, &qemu.initrd),
        ]
        .into_iter()
        .filter_map(|(used_as, reference)| {
            reference
                .clone()
                .map(|reference| Input { used_as, reference })
        })
        .collect();
        inputs.extend(
            qemu.pflash
                .iter()
                .enumerate()
                .map(|(index, reference)| Input {
                    used_as: InputUse::Pflash(index),
                    reference: reference.clone(),
                }),
        );
        if let Some(symbols) = &qemu.symbols {
            inputs.push(Input {
                used_as: InputUse::Symbols,
                reference: symbols.clone(),
            });
        }
        inputs.extend(qemu.loader.iter().enumerate().map(|(index, loader)| Input {
            used_as: InputUse::Loader(index),
            reference: loader.file.clone(),
        }));
        if let Some(disk) = &config.disk {
            inputs.extend(disk.entries.iter().filter_map(|entry| {
                entry.source.clone().map(|reference| Input {
                    used_as: InputUse::Disk(entry.dest.clone()),
                    reference,
                })
            }));
        }
        let (accel, accel_source) = match settings.accel {
            Some(choice) => (choice, "VMHARNESS_ACCEL"),
            None => (config.accel, "accel"),
        };
        let plan = Plan {
            loaded: loaded.clone(),
            arch: config.arch,
            accel,
            accel_source,
            qemu: QemuPlan {
                binary: qemu
                    .binary
                    .clone()
                    .unwrap_or_else(|| spec.qemu_binary.to_string()),
                machine: qemu
                    .machine
                    .clone()
                    .unwrap_or_else(|| spec.machine.to_string()),
                cpu: qemu.cpu.clone(),
                cpu_since: qemu.cpu_since.clone(),
                memory: qemu
                    .memory
                    .clone()
                    .unwrap_or_else(|| spec.memory.to_string()),
                smp: qemu.smp,
                append: qemu.append.clone(),
                exit_device: qemu
                    .exit_device
                    .unwrap_or(spec.exit_device_by_default)
                    .then_some(spec.exit_device),
                extra: qemu.args.clone(),
            },
            inputs,
            disk: config.disk.clone(),
            deadlines: Deadlines::new(&config.timeouts, settings.timeout_scale),
            ignore: config.ignore.clone(),
        };
        plan.check_accel()?;
        Ok(plan)
    }

    /// Where the config names the input used as `used` (its value); the file alone if the
    /// key cannot be found.
    pub(crate) fn input_location(&self, used: &InputUse) -> Location {
        let index;
        let keys: Vec<&str> = match used {
            InputUse::Bios => vec!["qemu", "bios"],
            InputUse::Kernel => vec!["qemu", "kernel"],
            InputUse::Initrd => vec!["qemu", "initrd"],
            InputUse::Symbols => vec!["qemu", "symbols"],
            InputUse::Pflash(at) => {
                index = at.to_string();
                vec!["qemu", "pflash", &index]
            }
            InputUse::Loader(at) => {
                index = at.to_string();
                vec!["qemu", "loader", &index, "file"]
            }
            InputUse::Disk(dest) => {
                let entries = self.disk.as_ref().map(|disk| disk.entries.as_slice());
                let at = entries
                    .unwrap_or_default()
                    .iter()
                    .position(|entry| &entry.dest == dest && entry.source.is_some());
                index = at.map(|at| at.to_string()).unwrap_or_default();
                vec!["disk", "entries", &index, "source"]
            }
        };
        self.loaded.locate(&keys)
    }

    /// Forces the accelerator (a frontend's `--accel`).
    pub(crate) fn set_accel(&mut self, choice: AccelChoice) -> Result<(), PlanError> {
        self.accel = choice;
        self.accel_source = "--accel";
        self.check_accel()
    }

    /// An explicit TCG choice with `cpu = "host"` cannot work anywhere.
    fn check_accel(&self) -> Result<(), PlanError> {
        match self.accel {
            AccelChoice::Tcg => self.check_cpu(Accel::Tcg, &format!("{} = tcg", self.accel_source)),
            _ => Ok(()),
        }
    }

    /// The CPU model for `accel`: the configured one, or the arch's default for it. `host`
    /// under TCG is a [`PlanError`] naming `why` TCG was chosen.
    pub(crate) fn check_cpu(&self, accel: Accel, why: &str) -> Result<(), PlanError> {
        if accel == Accel::Tcg && self.qemu.cpu.as_deref() == Some(HOST_CPU) {
            return Err(PlanError::HostCpuUnderTcg {
                location: self.loaded.locate(&["qemu", "cpu"]),
                why: why.to_string(),
            });
        }
        Ok(())
    }

    /// The CPU model for `accel`, for a QEMU whose version is not known.
    pub(crate) fn cpu(&self, accel: Accel) -> String {
        self.cpu_for(accel, None)
    }

    /// The CPU model for `accel` on QEMU `version`: the newest `cpu_since` entry that version
    /// has reached, else the configured or default model.
    pub fn cpu_for(&self, accel: Accel, version: Option<&QemuVersion>) -> String {
        let newer = version.and_then(|version| {
            self.qemu
                .cpu_since
                .iter()
                .rev()
                .find(|entry| version.at_least(entry.since.0, entry.since.1))
        });
        if let Some(entry) = newer {
            return entry.cpu.clone();
        }
        let spec = self.arch.spec();
        match (&self.qemu.cpu, accel) {
            (Some(cpu), _) => cpu.clone(),
            (None, Accel::Kvm) => spec.kvm_cpu.to_string(),
            (None, Accel::Tcg) => spec.tcg_cpu.to_string(),
        }
    }

    /// The judge's expectations, with every step deadline scaled for `accel`.
    pub(crate) fn expectations(&self, accel: Accel) -> Expectations {
        let console = &self.loaded.config.console;
        let mut panic_patterns: Vec<Regex> = DEFAULT_PANIC_PATTERNS
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        panic_patterns.extend(console.panic_patterns.iter().map(|p| p.0.clone()));
        Expectations {
            banner: console.banner.clone(),
            steps: self.scaled_steps(&console.steps, accel),
            success: console.success.clone(),
            panic_patterns,
            allow: console.allow.iter().map(|p| p.0.clone()).collect(),
            exit_code: console.exit_code,
            step_timeout: self.deadlines.scaled(self.deadlines.step, accel),
            line_ending: console.line_ending.clone().unwrap_or_else(|| "\r".into()),
            pass_after_steps: false,
        }
    }

    /// The expectations of one part of a `[[case]]` run, passing when its last step is met:
    /// the boot to `[ready]` (banner, steps, the ready pattern), the case's own steps, or both.
    pub(crate) fn case_expectations(&self, accel: Accel, part: CasePart<'_>) -> Expectations {
        let mut expect = self.expectations(accel);
        expect.success = None;
        expect.pass_after_steps = true;
        let ready = self.loaded.config.ready.as_ref().map(|ready| Step::Expect {
            pattern: ready.expect.clone(),
            timeout: ready.timeout,
        });
        let (boot, case) = match part {
            CasePart::Boot => (true, None),
            CasePart::Cold(case) => (true, Some(case)),
            CasePart::Restored(case) => (false, Some(case)),
        };
        if boot {
            expect
                .steps
                .extend(self.scaled_steps(ready.as_slice(), accel));
        } else {
            expect.banner.clear();
            expect.steps.clear();
        }
        if let Some(case) = case {
            expect.steps.extend(self.scaled_steps(&case.steps, accel));
        }
        expect
    }

    fn scaled_steps(&self, steps: &[Step], accel: Accel) -> Vec<Step> {
        let deadlines = &self.deadlines;
        steps
            .iter()
            .cloned()
            .map(|step| match step {
                Step::Expect { pattern, timeout } => Step::Expect {
                    pattern,
                    timeout: timeout.map(|d| deadlines.scaled(d, accel)),
                },
                Step::ExpectNot { pattern, timeout } => Step::ExpectNot {
                    pattern,
                    timeout: timeout.map(|d| deadlines.window(d, accel)),
                },
                send => send,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> LoadedConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path).unwrap()
    }

    #[test]
    #[cfg(feature = "artifacts")] // it names `artifact:` references
    fn inputs_name_where_each_file_is_used() {
        let plan = Plan::new(
            &loaded(
                "arch = \"x86_64\"\n[qemu]\nkernel = \"artifact:a/k\"\npflash = [\"c.fd\", \"env:VARS\"]\n[disk]\n[[disk.entries]]\ndest = \"/x\"\nsource = \"x.bin\"\n",
            ),
            &Settings::defaults("/w"),
        )
        .unwrap();
        let inputs: Vec<String> = plan
            .inputs
            .iter()
            .map(|i| format!("{} {}", i.used_as, i.reference))
            .collect();
        assert_eq!(
            inputs,
            [
                "-kernel artifact:a/k",
                "-pflash #1 c.fd",
                "-pflash #2 env:VARS",
                "[disk] /x x.bin"
            ]
        );
    }

    #[test]
    fn host_cpu_under_forced_tcg_is_a_located_plan_error() {
        let config = loaded("arch = \"x86_64\"\n[qemu]\ncpu = \"host\"\n");
        let mut settings = Settings::defaults("/w");
        settings.accel = Some(AccelChoice::Tcg);
        let err = Plan::new(&config, &settings).unwrap_err().to_string();
        assert!(
            err.contains("t.toml:3:7: `qemu.cpu = \"host\"` needs KVM"),
            "{err}"
        );
        assert!(err.contains("VMHARNESS_ACCEL = tcg"), "{err}");
        let mut plan = Plan::new(&config, &Settings::defaults("/w")).unwrap();
        assert!(plan
            .set_accel(AccelChoice::Tcg)
            .unwrap_err()
            .to_string()
            .contains("--accel = tcg"));
    }

    #[test]
    fn cpu_since_picks_the_newest_release_the_qemu_has_reached() {
        let plan = Plan::new(
            &loaded(
                "arch = \"riscv64\"\n[qemu]\ncpu = \"rv64\"\ncpu_since = { \"9.1\" = \"newest\", \"8.0\" = \"max,sstc=on\" }\n",
            ),
            &Settings::defaults("/w"),
        )
        .unwrap();
        let on = |line: &str| {
            let version = QemuVersion::parse(line).unwrap();
            plan.cpu_for(Accel::Tcg, Some(&version))
        };
        assert_eq!(on("QEMU emulator version 7.2.19 (Debian)"), "rv64");
        assert_eq!(on("QEMU emulator version 8.0.0"), "max,sstc=on");
        assert_eq!(on("QEMU emulator version 9.0.2"), "max,sstc=on");
        assert_eq!(on("QEMU emulator version 10.0.2 (Debian)"), "newest");
        assert_eq!(plan.cpu_for(Accel::Tcg, None), "rv64", "version unknown");
        let default = Plan::new(
            &loaded("arch = \"riscv64\"\n[qemu]\ncpu_since = { \"8.0\" = \"max\" }\n"),
            &Settings::defaults("/w"),
        )
        .unwrap();
        let old = QemuVersion::parse("QEMU emulator version 7.2.0").unwrap();
        assert_eq!(
            default.cpu_for(Accel::Tcg, Some(&old)),
            "rv64",
            "the arch default"
        );
    }

    #[test]
    fn cpu_since_keys_must_be_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        for key in ["8", "latest", "8.x", "", "8.0.1"] {
            let text =
                format!("arch = \"riscv64\"\n[qemu]\ncpu_since = {{ \"{key}\" = \"max\" }}\n");
            std::fs::write(&path, text).unwrap();
            let err = crate::config::load(&path).unwrap_err().to_string();
            assert!(err.contains("t.toml:3:"), "{key:?}: {err}");
            assert!(err.contains("QEMU releases like \"8.0\""), "{key:?}: {err}");
        }
    }
}
