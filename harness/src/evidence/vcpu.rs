//! What the vCPUs were doing when a run failed or timed out: QEMU is stopped over QMP, each
//! vCPU's registers are read (`info registers`), sampled twice a short interval apart, and the
//! program counters are symbolized against the guest's ELF.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::symbols::Symbols;
use crate::arch::Arch;
use crate::qemu::{Qmp, QmpError};

/// How long the guest runs between the two samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// One vCPU when QEMU was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    /// QEMU's CPU index.
    pub index: usize,
    /// The program counter.
    pub pc: Option<u64>,
    /// The stack pointer.
    pub sp: Option<u64>,
    /// `function+offset (file:line)` of the PC, when symbols cover it.
    pub symbol: Option<String>,
    /// The arch's key state (x86 CR3/RFLAGS/CPL/HLT; aarch64 PSTATE/EL; riscv64 mstatus/...).
    pub state: BTreeMap<String, String>,
    /// What the two samples show.
    pub activity: Activity,
}

/// What a vCPU did between the two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Its PC moved: it is running (a loop, or progress).
    Running,
    /// Same PC, in `hlt`/`wfi`: stuck waiting for an interrupt.
    Waiting,
    /// Same PC, not waiting: spinning in one place.
    Spinning,
    /// Only one sample could be taken.
    Unknown,
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Activity::Running => "running (its PC moved between two samples)",
            Activity::Waiting => "waiting for an interrupt (hlt/wfi)",
            Activity::Spinning => "spinning in one place",
            Activity::Unknown => "one sample",
        })
    }
}

/// Stops QEMU through `socket`, samples every vCPU twice and symbolizes the PCs.
pub(crate) fn snapshot(
    socket: &Path,
    arch: Arch,
    symbols: Option<&Symbols>,
) -> Result<Vec<CpuState>, QmpError> {
    let mut qmp = Qmp::connect(socket)?;
    qmp.execute("stop", json!({}))?;
    let first = parse(&qmp.human("info registers -a")?, arch);
    qmp.execute("cont", json!({}))?;
    std::thread::sleep(SAMPLE_INTERVAL);
    qmp.execute("stop", json!({}))?;
    let second = parse(&qmp.human("info registers -a")?, arch);
    let mut cpus = Vec::new();
    for mut cpu in second {
        let before = first
            .iter()
            .find(|c| c.index == cpu.index)
            .and_then(|c| c.pc);
        cpu.activity = match (before, cpu.pc) {
            (Some(a), Some(b)) if a != b => Activity::Running,
            (Some(_), Some(pc)) if waiting(&mut qmp, arch, &cpu, pc) => Activity::Waiting,
            (Some(_), Some(_)) => Activity::Spinning,
            _ => Activity::Unknown,
        };
        cpu.symbol = cpu.pc.and_then(|pc| symbols.and_then(|s| s.describe(pc)));
        cpus.push(cpu);
    }
    Ok(cpus)
}

/// Whether the vCPU sits in `hlt` (x86 reports it) or at a `wfi` instruction.
fn waiting(qmp: &mut Qmp, arch: Arch, cpu: &CpuState, pc: u64) -> bool {
    if arch == Arch::X86_64 {
        return cpu.state.get("HLT").is_some_and(|h| h == "1");
    }
    let wfi: u32 = match arch {
        Arch::Aarch64 => 0xd503_207f,
        _ => 0x1050_0073,
    };
    // The PC rests on the `wfi`, or just after it.
    [pc, pc.saturating_sub(4)].into_iter().any(|at| {
        qmp.human(&format!("x /1xw {at:#x}"))
            .ok()
            .is_some_and(|text| {
                text.split(':')
                    .nth(1)
                    .and_then(|w| u32::from_str_radix(w.trim().trim_start_matches("0x"), 16).ok())
                    == Some(wfi)
            })
    })
}

/// The vCPUs in `info registers -a` output.
pub fn parse(text: &str, arch: Arch) -> Vec<CpuState> {
    let mut cpus = Vec::new();
    for (index, block) in text.split("CPU#").skip(1).enumerate() {
        let index = block
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(index);
        let registers = registers(block);
        let hex = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| registers.get(*k))
                .and_then(|v| u64::from_str_radix(v, 16).ok())
        };
        let (pc, sp, keys): (_, _, &[&str]) = match arch {
            Arch::X86_64 => (
                hex(&["RIP", "EIP"]),
                hex(&["RSP", "ESP"]),
                &["CR3", "RFL", "EFL", "CPL", "HLT"],
            ),
            Arch::Aarch64 => (hex(&["PC"]), hex(&["SP"]), &["PSTATE", "EL"]),
            Arch::Riscv64 => (
                hex(&["pc"]),
                hex(&["x2/sp"]),
                &["mstatus", "mcause", "scause", "satp"],
            ),
        };
        let state = keys
            .iter()
            .filter_map(|k| registers.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        cpus.push(CpuState {
            index,
            pc,
            sp,
            symbol: None,
            state,
            activity: Activity::Unknown,
        });
    }
    cpus
}

/// `KEY=VALUE` tokens (x86, aarch64), `name value` pairs (riscv64), and aarch64's EL mode.
fn registers(block: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in block.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            if let Some((key, value)) = token.split_once('=') {
                if !key.is_empty() && !value.is_empty() {
                    map.entry(key.to_string())
                        .or_insert_with(|| value.to_string());
                }
            } else if token.len() >= 3 && token.starts_with("EL") {
                map.insert("EL".into(), token.to_string());
            } else if let Some(value) = tokens.get(i + 1) {
                let is_hex = value.len() >= 8 && value.chars().all(|c| c.is_ascii_hexdigit());
                if is_hex
                    && token
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                {
                    map.entry(token.to_string())
                        .or_insert_with(|| value.to_string());
                    i += 1;
                }
            }
            i += 1;
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_of_each_arch_are_read() {
        let x86 = "\nCPU#0\nEAX=00105af8 EBX=00000002\nESI=00105c14 EDI=00101a50 EBP=00105ae0 ESP=00105ae0\nEIP=001012a2 EFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\nCR0=00000011 CR2=00000000 CR3=00000000 CR4=00000000\n";
        let cpu = &parse(x86, Arch::X86_64)[0];
        assert_eq!((cpu.pc, cpu.sp), (Some(0x1012a2), Some(0x105ae0)));
        assert_eq!(cpu.state.get("HLT").map(String::as_str), Some("1"));
        let arm = "\nCPU#0\n PC=0000000040082b98 X00=0000000000000001\nX29=0000000040086ee0 X30=0000000040082560  SP=0000000040086ee0\nPSTATE=600003c5 -ZC- EL1h    FPU disabled\n";
        let cpu = &parse(arm, Arch::Aarch64)[0];
        assert_eq!((cpu.pc, cpu.sp), (Some(0x4008_2b98), Some(0x4008_6ee0)));
        assert_eq!(cpu.state.get("EL").map(String::as_str), Some("EL1h"));
        let riscv = "\nCPU#0\n V      =   0\n pc       000000008020134a\n mstatus  8000000a00006080\n x0/zero  0000000000000000 x1/ra    0000000080200d0c x2/sp    0000000080205560 x3/gp    0000000000000000\n";
        let cpu = &parse(riscv, Arch::Riscv64)[0];
        assert_eq!((cpu.pc, cpu.sp), (Some(0x8020_134a), Some(0x8020_5560)));
        assert!(cpu.state.contains_key("mstatus"));
    }
}
