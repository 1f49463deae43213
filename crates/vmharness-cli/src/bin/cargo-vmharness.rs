//! `cargo vmharness qemu|ci|test|guests|disk-img|kvm-probe|setup`: the cargo subcommand form
//! of the `vmharness` binary.

fn main() {
    vmharness_cli::cargo_main()
}
