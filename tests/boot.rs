//! `cargo test --test boot`: every `vm-configs/*.toml` except the NimbOS suite, one trial each.

use vmharness::run::{FileResolver, Resolver};

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trials = vmharness::suite::trials(
        |name| !name.starts_with("nimbos-"),
        || Box::new(Resolver::from_env()) as Box<dyn FileResolver>,
    );
    libtest_mimic::run(&args, trials).exit();
}
