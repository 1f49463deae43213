//! `cargo test --test nimbos`: the NimbOS suite (`vm-configs/nimbos-*.toml`), one trial per arch.
//!
//! Each trial boots the hypervisor named by `VMHARNESS_HYPERVISOR_<ARCH>` with NimbOS on a FAT32
//! disk and runs NimbOS's usertests. Without the hypervisor image or the NimbOS downloads the
//! trials are ignored with the reason (failures with `VMHARNESS_REQUIRE_ARTIFACTS=1` or in CI).

use vmharness::run::{FileResolver, Resolver};

fn main() {
    vmharness::suite::main(
        |name| name.starts_with("nimbos-"),
        || Box::new(Resolver::from_env()) as Box<dyn FileResolver>,
    )
}
