//! `vmharness qemu|ci|test|guests|disk-img|kvm-probe|setup`: vmharness's commands for the
//! cargo workspace around the current directory.

fn main() {
    vmharness_cli::main()
}
