//! Choosing the accelerator: KVM only when a probe boot proves it works, TCG otherwise.
//!
//! `/dev/kvm` existing is not enough: a broken host may abort QEMU (`failed to set MSR`),
//! pause the VM after `KVM internal error` at the first x87/SSE instruction, or hang. The probe
//! boots a tiny guest that executes x87 and SSE instructions and must print a marker within a
//! deadline. The answer is cached per QEMU binary, host kernel and CPU model.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::arch::AccelChoice;
use crate::arch::Arch;
use crate::console::{Line, ReadEvent, Session};
use crate::qemu::{QemuProcess, QemuSpec};

pub use crate::qemu::Accel;

/// What QEMU prints on stderr when the accelerator, not the guest, failed.
pub(crate) const FAILURE_MARKERS: &[&str] =
    &["KVM internal error", "failed to set MSR", "kvm run failed"];

/// The first accelerator failure marker in QEMU's stderr, if any.
pub(crate) fn failure_marker(stderr: &str) -> Option<&'static str> {
    FAILURE_MARKERS.iter().copied().find(|m| stderr.contains(m))
}

/// The chosen accelerator and, when `auto` fell back, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why `auto` fell back to TCG, if it did.
    pub fallback: Option<String>,
}

/// KVM was required but cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("accel = \"kvm\" but KVM is unusable on this host: {reason}")]
pub struct KvmUnusable {
    /// Why KVM cannot be used.
    pub reason: String,
}

/// What the probe needs to know.
#[derive(Debug, Clone)]
pub struct ProbeSpec<'a> {
    /// The resolved QEMU binary.
    pub qemu: &'a Path,
    /// The machine type to probe.
    pub machine: &'a str,
    /// The CPU model the test would use under KVM.
    pub cpu: &'a str,
    /// Where to cache the answer (e.g. `target/vmharness/kvm-probe`).
    pub cache_dir: &'a Path,
    /// How long the probe guest may take to print its marker.
    pub timeout: Duration,
    /// Where the probe's own temp dir goes (swept like a run's).
    pub temp_dir: &'a Path,
}

pub use crate::settings::DEFAULT_PROBE_TIMEOUT;

/// Picks the accelerator for a guest.
pub(crate) fn choose(
    choice: AccelChoice,
    arch: Arch,
    probe: &ProbeSpec<'_>,
) -> Result<Decision, KvmUnusable> {
    match choice {
        AccelChoice::Tcg => Ok(Decision {
            accel: Accel::Tcg,
            fallback: None,
        }),
        AccelChoice::Kvm => match kvm_usable(arch, probe) {
            Ok(()) => Ok(Decision {
                accel: Accel::Kvm,
                fallback: None,
            }),
            Err(reason) => Err(KvmUnusable { reason }),
        },
        AccelChoice::Auto => Ok(match kvm_usable(arch, probe) {
            Ok(()) => Decision {
                accel: Accel::Kvm,
                fallback: None,
            },
            Err(reason) => Decision {
                accel: Accel::Tcg,
                fallback: Some(reason),
            },
        }),
    }
}

/// `Ok` when KVM can run this guest, else the reason it cannot.
pub fn kvm_usable(arch: Arch, probe: &ProbeSpec<'_>) -> Result<(), String> {
    let host = Arch::host();
    if host != Some(arch) {
        let host_name = host.map_or(std::env::consts::ARCH, Arch::name);
        return Err(format!("the guest is {arch} and the host is {host_name}"));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|err| format!("/dev/kvm cannot be opened read-write ({err})"))?;
    if arch != Arch::X86_64 {
        // The probe guest is x86 code; elsewhere an openable /dev/kvm is all we can check.
        return Ok(());
    }
    let key = cache_key(probe);
    let cache_file = probe.cache_dir.join(format!("{key}.txt"));
    if let Some(cached) = cached_answer(&cache_file) {
        return cached;
    }
    // One probe per machine and key: trials that start together wait for the first one's
    // answer instead of each paying the probe's seconds (and printing its note twice).
    let _lock = std::fs::create_dir_all(probe.cache_dir)
        .and_then(|()| std::fs::File::create(probe.cache_dir.join(format!("{key}.lock"))))
        .ok()
        .and_then(|file| nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok());
    if let Some(cached) = cached_answer(&cache_file) {
        return cached;
    }
    let result = run_probe(probe);
    let record = match &result {
        Ok(()) => "ok\n".to_string(),
        Err(reason) => format!("{reason}\n"),
    };
    let temp = cache_file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&temp, &record).is_ok() {
        let _ = std::fs::rename(&temp, &cache_file);
    }
    append_history(probe.cache_dir, &key, &record);
    result
}

/// Every probe boot is appended to `<cache>/probes.log`: when, which key, what it said.
pub const PROBE_HISTORY: &str = "probes.log";

fn append_history(cache_dir: &Path, key: &str, record: &str) {
    use std::io::Write;
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cache_dir.join(PROBE_HISTORY))
    {
        let _ = write!(file, "{seconds} {key} {record}");
    }
}

/// The answer cached in `cache_file`, if any.
fn cached_answer(cache_file: &Path) -> Option<Result<(), String>> {
    let cached = std::fs::read_to_string(cache_file).ok()?;
    Some(match cached.strip_prefix("ok") {
        Some(_) => Ok(()),
        None => Err(format!(
            "{} (cached probe result in {})",
            cached.trim(),
            cache_file.display()
        )),
    })
}

fn cache_key(probe: &ProbeSpec<'_>) -> String {
    use vmharness_digest::Sha256;
    let meta = std::fs::metadata(probe.qemu).ok();
    let stamp = meta.map(|m| {
        use std::os::unix::fs::MetadataExt;
        format!("{}:{}:{}", m.len(), m.mtime(), m.ino())
    });
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut hasher = Sha256::new();
    for part in [
        probe.qemu.to_string_lossy().as_ref(),
        stamp.as_deref().unwrap_or(""),
        &kernel,
        probe.machine,
        probe.cpu,
    ] {
        hasher.update(part.as_bytes());
        hasher.update(&[0]);
    }
    vmharness_digest::to_hex(&hasher.finish()[..12])
}

/// The marker the probe guest prints after executing x87 and SSE instructions.
pub(crate) const PROBE_MARKER: &str = "vmharness-kvm-probe-ok";

fn run_probe(probe: &ProbeSpec<'_>) -> Result<(), String> {
    let dir = crate::temp::RunTemp::new(probe.temp_dir, "kvm-probe")
        .map_err(|err| format!("cannot create a probe temp dir: {err}"))?;
    let kernel = dir.path().join("probe.bin");
    std::fs::write(&kernel, probe_guest())
        .map_err(|err| format!("cannot write the probe guest: {err}"))?;
    let mut spec = QemuSpec::new(probe.qemu, probe.machine, Accel::Kvm, probe.cpu, "64M");
    spec.exit_device = Some(crate::arch::ExitDevice::IsaDebugExit);
    spec.kernel = Some(kernel);
    let command = spec.argv();
    let stderr_path = dir.path().join("stderr.log");
    let process = QemuProcess::spawn(&command, &stderr_path, crate::qemu::Transport::Pipe)
        .map_err(|err| err.to_string())?;
    let mut session = Session::new(
        process,
        &dir.path().join("console.log"),
        crate::console::DEFAULT_LOG_LIMIT,
    )
    .map_err(|err| format!("cannot read the probe console: {err}"))?;
    let timeout = probe.timeout;
    let deadline = Instant::now() + timeout;
    let mut lines: Vec<Line> = Vec::new();
    let seen = loop {
        if lines.iter().any(|line| line.text.contains(PROBE_MARKER)) {
            break true;
        }
        // Wake up regularly: a broken KVM reports on stderr and leaves the VM paused.
        let slice = (Instant::now() + Duration::from_millis(100)).min(deadline);
        match session.read(slice, &mut lines) {
            ReadEvent::Output => {}
            ReadEvent::Closed => break lines.iter().any(|line| line.text.contains(PROBE_MARKER)),
            ReadEvent::Idle if Instant::now() >= deadline => break false,
            ReadEvent::Idle => {
                let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                if failure_marker(&stderr).is_some() {
                    break false;
                }
            }
        }
    };
    session.kill();
    if seen {
        return Ok(());
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    let why = if said.is_empty() {
        format!(
            "the probe guest printed no marker within {}s",
            timeout.as_secs_f64()
        )
    } else {
        format!(
            "the probe guest failed under KVM: QEMU said `{}`",
            said.join(" / ")
        )
    };
    Err(format!("{why} (probe: {})", command.to_shell_line()))
}

/// A multiboot (a.out kludge) flat binary that enables x87/SSE, runs `fldz` and `xorps`,
/// prints `PROBE_MARKER` on COM1 and exits through `isa-debug-exit`.
pub fn probe_guest() -> Vec<u8> {
    const LOAD: u32 = 0x0010_0000;
    const MAGIC: u32 = 0x1bad_b002;
    const FLAGS: u32 = 1 << 16; // the address fields below are valid
    let header_len = 32u32;
    let mut code: Vec<u8> = vec![
        0x0f, 0x20, 0xc0, // mov eax, cr0
        0x25, 0xfb, 0xff, 0xff, 0xff, // and eax, ~CR0.EM
        0x83, 0xc8, 0x02, // or eax, CR0.MP
        0x0f, 0x22, 0xc0, // mov cr0, eax
        0x0f, 0x20, 0xe0, // mov eax, cr4
        0x0d, 0x00, 0x06, 0x00, 0x00, // or eax, CR4.OSFXSR | CR4.OSXMMEXCPT
        0x0f, 0x22, 0xe0, // mov cr4, eax
        0xdb, 0xe3, // fninit
        0xd9, 0xee, // fldz
        0xdd, 0xd8, // fstp st(0)
        0x0f, 0x57, 0xc0, // xorps xmm0, xmm0
        0x0f, 0x58, 0xc0, // addps xmm0, xmm0
        0xbe, 0, 0, 0, 0, // mov esi, message (patched below)
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xac, // next: lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x03, // jz done
        0xee, // out dx, al
        0xeb, 0xf8, // jmp next
        0x66, 0xba, 0xf4, 0x00, // done: mov dx, 0xf4
        0xb0, 0x00, // mov al, 0
        0xee, // out dx, al  (QEMU exits with status 1)
        0xfa, // cli
        0xf4, // halt: hlt
        0xeb, 0xfd, // jmp halt
    ];
    let message_addr = LOAD + header_len + code.len() as u32;
    let patch = code.iter().position(|&b| b == 0xbe).unwrap_or(0) + 1;
    code[patch..patch + 4].copy_from_slice(&message_addr.to_le_bytes());
    let mut image = Vec::with_capacity(1024);
    for word in [
        MAGIC,
        FLAGS,
        0u32.wrapping_sub(MAGIC).wrapping_sub(FLAGS),
        LOAD,              // header_addr
        LOAD,              // load_addr
        0,                 // load_end_addr: the whole file
        0,                 // bss_end_addr: no bss
        LOAD + header_len, // entry_addr
    ] {
        image.extend_from_slice(&word.to_le_bytes());
    }
    image.extend_from_slice(&code);
    image.extend_from_slice(PROBE_MARKER.as_bytes());
    image.extend_from_slice(b"\r\n\0");
    // QEMU reads the first 8 KiB looking for a Linux header; keep the tail defined.
    image.resize(1024, 0);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_guest_has_a_valid_multiboot_header() {
        let image = probe_guest();
        let word = |i: usize| u32::from_le_bytes(image[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(0), 0x1bad_b002);
        assert_eq!(word(0).wrapping_add(word(1)).wrapping_add(word(2)), 0);
        let text = String::from_utf8_lossy(&image);
        assert!(text.contains(PROBE_MARKER));
    }

    #[test]
    fn tcg_needs_no_probe() {
        let probe = ProbeSpec {
            qemu: Path::new("/nonexistent"),
            machine: "q35",
            cpu: "host",
            cache_dir: Path::new("/nonexistent"),
            timeout: DEFAULT_PROBE_TIMEOUT,
            temp_dir: Path::new("/nonexistent"),
        };
        let decision = choose(AccelChoice::Tcg, Arch::X86_64, &probe).unwrap();
        assert_eq!(decision.accel, Accel::Tcg);
        let decision = choose(AccelChoice::Auto, Arch::Aarch64, &probe).unwrap();
        assert_eq!(decision.accel, Accel::Tcg);
        assert!(decision.fallback.unwrap().contains("guest is aarch64"));
    }
}
