//! `cargo xtask qemu <arch>`: boot one config with the console on the terminal.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vmharness::arch::Arch;
use vmharness::config::AccelChoice;
use vmharness::run::{self, Resolver, RunOptions};

#[derive(Args)]
pub struct QemuArgs {
    /// Guest architecture: x86_64, aarch64 or riscv64.
    pub arch: Option<String>,
    /// A VM config to boot instead of the arch's default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Accelerator: auto, kvm or tcg.
    #[arg(long)]
    pub accel: Option<String>,
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
}

pub fn run(args: QemuArgs) -> anyhow::Result<i32> {
    let root = vmharness::paths::workspace_root();
    let config_path = match (&args.config, &args.arch) {
        (Some(path), _) => path.clone(),
        (None, Some(arch)) => {
            let arch: Arch = arch.parse().map_err(anyhow::Error::msg)?;
            root.join("vm-configs")
                .join(format!("selftest-{arch}.toml"))
        }
        (None, None) => anyhow::bail!("give an arch (x86_64, aarch64, riscv64) or --config FILE"),
    };
    let loaded = vmharness::config::load_with_overrides(&config_path, &args.overrides)
        .with_context(|| format!("loading {}", config_path.display()))?;
    let accel = match args.accel.as_deref() {
        None => None,
        Some("auto") => Some(AccelChoice::Auto),
        Some("kvm") => Some(AccelChoice::Kvm),
        Some("tcg") => Some(AccelChoice::Tcg),
        Some(other) => anyhow::bail!("unknown accel `{other}` (expected auto, kvm or tcg)"),
    };
    let resolver = Resolver::from_env();
    let remote = match args.remote.as_deref() {
        Some(spec) => Some(vmharness::remote::Remote::parse_with_env(spec)?),
        None => vmharness::remote::Remote::from_env()?,
    };
    let options = RunOptions {
        remote,
        accel,
        extra_args: args.qemu_args.clone(),
        append: args.append.clone(),
        tee: Some(Box::new(std::io::stdout())),
        ..RunOptions::default()
    };
    if args.print_cmd {
        let log_dir = vmharness::paths::log_dir(&root, &loaded.name);
        return match run::prepare(&loaded, &resolver, &options, &log_dir) {
            Ok(prepared) => {
                println!("{}", prepared.command.to_shell_line());
                Ok(0)
            }
            Err(outcome) => {
                eprintln!("{outcome}");
                Ok(outcome.exit_code())
            }
        };
    }
    let report = run::run(&loaded, &resolver, options);
    eprintln!("\n{report}");
    Ok(report.outcome.exit_code())
}

pub fn kvm_probe(write_guest: Option<PathBuf>) -> anyhow::Result<i32> {
    if let Some(path) = write_guest {
        std::fs::write(&path, vmharness::accel::probe_guest())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("probe guest written to {}", path.display());
    }
    let qemu = vmharness::qemu::find_binary(Arch::X86_64.spec().qemu_binary)?;
    let cache = tempfile::tempdir()?;
    let probe = vmharness::accel::ProbeSpec {
        qemu: &qemu,
        machine: Arch::X86_64.spec().machine,
        cpu: Arch::X86_64.spec().kvm_cpu,
        cache_dir: cache.path(),
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
