//! `cargo test --test nimbos`: the NimbOS suite (`vm-configs/nimbos-*.toml`).
//!
//! `nimbos-<arch>` boots the hypervisor named by `VMHARNESS_HYPERVISOR_<ARCH>` with NimbOS on a
//! FAT32 disk; each usertest program is its own trial (`nimbos-<arch>::<program>`), run by name
//! at the shell prompt from the state saved there. `nimbos-standalone-<arch>` boots NimbOS alone
//! and runs `usertests`, one sub-result per program. Without the hypervisor image or the NimbOS
//! downloads the trials are ignored with the reason (failures with
//! `VMHARNESS_REQUIRE_ARTIFACTS=1` or in CI).

fn main() {
    vmharness::Suite::new()
        .select(|name| name.starts_with("nimbos-"))
        .main()
}
