//! `qemu <arch>`: boot one config with the console on the terminal.
//!
//! Interactive by default: keys go to the guest (stdin in raw mode when it is a terminal),
//! Ctrl-] quits. `--check` is the non-interactive form whose exit code is the verdict.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vmharness::arch::Arch;
use vmharness::config::{AccelChoice, LoadedConfig};
use vmharness::console::{key_name, ConsoleInput};
use vmharness::run::{self, FileResolver, Resolver, RunOptions};
use vmharness::settings::Settings;

use crate::terminal::{self, RawMode, ESCAPE};

const EXIT_CODES: &str = "\
Interactive: the guest console is attached to the terminal (raw mode when stdin is a
terminal); what you type goes to the guest's serial port. Ctrl-] quits and kills QEMU.
The verdict checks run all the time; after a verdict the console stays attached until QEMU
exits or you press Ctrl-]. The verdict is printed at the end.

Exit codes (the verdict; the same with and without --check):
  0  pass      every expectation met
  1  fail      panic pattern, wrong exit code, QEMU died early, or Ctrl-] before the verdict
  2  timeout   a deadline passed while waiting
  3  infra     the host could not run it (QEMU missing, KVM broken, artifact unobtainable)
  4  skipped   the config is ignored (`ignore = \"why\"`)
  5  unavailable  an input cannot be obtained here (artifact offline, env: variable unset)";

/// Arguments of `qemu`.
#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct QemuArgs {
    /// Guest architecture: x86_64, aarch64 or riscv64.
    pub arch: Option<String>,
    /// A VM config to boot instead of the arch's default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run this `[[case]]` of the config, from the state saved at `[ready]` (booting there
    /// and saving it first when there is none); its steps run, then the console stays yours.
    #[arg(long, value_name = "NAME")]
    pub case: Option<String>,
    /// Accelerator: auto, kvm or tcg.
    #[arg(long)]
    pub accel: Option<AccelChoice>,
    /// Override a config key, e.g. `--set qemu.memory=1G` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Extra QEMU argument (repeatable).
    #[arg(long = "qemu-arg", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// Replace the kernel command line.
    #[arg(long)]
    pub append: Option<String>,
    /// Print the QEMU command line and exit without booting.
    #[arg(long)]
    pub print_cmd: bool,
    /// Run QEMU on this host over ssh, `user@host[:port]` (default: `$VMHARNESS_REMOTE`).
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub remote: Option<String>,
    /// Non-interactive: no raw mode, no input; exit with the verdict's code.
    #[arg(long)]
    pub check: bool,
    /// Let gdb attach on 127.0.0.1:1234 (QEMU waits for `continue`); no timeouts. Loopback
    /// only: use an ssh tunnel to debug from another machine.
    #[arg(long)]
    pub gdb: bool,
}

/// Boots the config; returns the verdict's exit code.
pub fn run(args: QemuArgs) -> anyhow::Result<i32> {
    let settings = Settings::from_env()?;
    // The README's first command sets up a fresh machine, the same way `test` does.
    if args.remote.is_none() && settings.remote.is_none() {
        crate::setup::run()?;
    }
    let config_path = match (&args.config, &args.arch) {
        (Some(path), _) => path.clone(),
        (None, Some(arch)) => {
            let arch: Arch = arch.parse().map_err(anyhow::Error::msg)?;
            settings.configs_dir().join(format!("selftest-{arch}.toml"))
        }
        (None, None) => anyhow::bail!("give an arch (x86_64, aarch64, riscv64) or --config FILE"),
    };
    let loaded = vmharness::config::load_with_overrides(&config_path, &args.overrides)
        .with_context(|| format!("loading {}", config_path.display()))?;
    if let Some(case) = &args.case {
        let cases: Vec<&str> = loaded
            .config
            .cases
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        anyhow::ensure!(
            cases.contains(&case.as_str()),
            "{} has no case `{case}` (its cases: {})",
            config_path.display(),
            if cases.is_empty() {
                "none".to_string()
            } else {
                cases.join(", ")
            }
        );
    }
    let resolver = Resolver::from_settings(&settings);
    let remote = match args.remote.as_deref() {
        Some(spec) => Some(settings.remote_at(spec)?),
        None => settings.remote.clone(),
    };
    let mut extra_args = args.qemu_args.clone();
    if args.gdb {
        // Not `-s`: that is `-gdb tcp::1234`, which listens on every interface.
        extra_args.extend(["-gdb", GDB_LISTEN, "-S"].map(String::from));
    }
    let hint = args.gdb.then(|| gdb_hint(&loaded, &resolver, &settings));
    let logs = settings.logs_dir();
    let mut options = RunOptions {
        settings: Some(settings),
        remote,
        accel: args.accel,
        extra_args,
        append: args.append.clone(),
        no_timeouts: args.gdb,
        tee: Some(Box::new(std::io::stdout())),
        ..RunOptions::default()
    };
    if let Some(hint) = hint {
        eprintln!("{hint}");
    }
    if args.print_cmd {
        // Nothing runs: the scratch log dir goes away with this function.
        let scratch = tempfile::tempdir().context("creating a scratch log dir")?;
        return match run::prepare(&loaded, &resolver, &options, scratch.path()) {
            Ok(prepared) => {
                // The QMP socket would live in a temp dir that is gone once this returns.
                let mut spec = prepared.spec.clone();
                spec.qmp = None;
                println!("{}", spec.argv().to_shell_line());
                Ok(0)
            }
            Err(outcome) => {
                eprintln!("{outcome}");
                Ok(outcome.exit_code())
            }
        };
    }
    // Every run is recorded like a test trial's, and `latest` points at it once it is.
    let test = match &args.case {
        Some(case) => run::case_trial_name(&loaded.name, case),
        None => loaded.name.clone(),
    };
    let log_dir = run::logs::new_run_dir(&logs, &test)
        .with_context(|| format!("creating a log dir in {}", logs.join(&test).display()))?;
    options.log_dir = Some(log_dir.clone());
    let raw = if args.check {
        None
    } else {
        let stdin = std::io::stdin();
        let fd = stdin
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdin for console input")?;
        options.input = Some(ConsoleInput {
            fd,
            escape: Some(ESCAPE),
        });
        if stdin.is_terminal() {
            eprintln!(
                "[vmharness] {}: console attached, {} quits",
                loaded.name,
                key_name(ESCAPE)
            );
        }
        RawMode::enter()?
    };
    let report = match &args.case {
        Some(case) => run::run_case(&loaded, case, &resolver, options),
        None => run::run(&loaded, &resolver, options),
    };
    drop(raw);
    terminal::restore();
    let report = vmharness::suite::record::recorded(report, &loaded);
    let _ = run::logs::mark_latest(&log_dir);
    eprintln!("\n{report}");
    Ok(report.outcome.exit_code())
}

/// Where `--gdb` makes QEMU's gdb stub listen: loopback only.
const GDB_LISTEN: &str = "tcp:127.0.0.1:1234";

/// How to attach gdb: the kernel ELF carries the symbols.
fn gdb_hint(loaded: &LoadedConfig, resolver: &dyn FileResolver, settings: &Settings) -> String {
    let kernel = loaded
        .config
        .qemu
        .kernel
        .as_ref()
        .and_then(|reference| {
            run::resolve_ref(reference, loaded.base_dir(), resolver, settings).ok()
        })
        .map_or_else(
            || "<kernel-elf>".to_string(),
            |path| path.display().to_string(),
        );
    format!(
        "[vmharness] QEMU waits for gdb on 127.0.0.1:1234 only (timeouts off); attach with:\n  gdb-multiarch {kernel} -ex 'target remote :1234'\n  (from another machine: ssh -L 1234:127.0.0.1:1234 this-host)"
    )
}

/// Arguments of `kvm-probe`.
#[derive(Args)]
pub struct KvmProbeArgs {
    /// Also write the probe guest to this file (boot it by hand with `-kernel`).
    #[arg(long)]
    pub write_guest: Option<PathBuf>,
}

/// Probes KVM (the cached answer is ignored): exit code 0 when it works, 1 when not.
pub fn kvm_probe(write_guest: Option<PathBuf>) -> anyhow::Result<i32> {
    if let Some(path) = write_guest {
        std::fs::write(&path, vmharness::accel::probe_guest())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("probe guest written to {}", path.display());
    }
    let qemu = vmharness::qemu::find_binary(Arch::X86_64.spec().qemu_binary)?;
    let cache = tempfile::tempdir()?;
    let settings = Settings::from_env()?;
    let temp_dir = settings.state_dir().join("tmp");
    let probe = vmharness::accel::ProbeSpec {
        qemu: &qemu,
        machine: Arch::X86_64.spec().machine,
        cpu: Arch::X86_64.spec().kvm_cpu,
        cache_dir: cache.path(),
        timeout: settings.kvm_probe_timeout,
        temp_dir: &temp_dir,
    };
    match vmharness::accel::kvm_usable(Arch::X86_64, &probe) {
        Ok(()) => {
            println!("KVM works: the probe guest ran x87/SSE code and printed its marker");
            Ok(0)
        }
        Err(reason) => {
            println!("KVM is unusable: {reason}");
            Ok(1)
        }
    }
}
