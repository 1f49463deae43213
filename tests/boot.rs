//! `cargo test --test boot`: every `vm-configs/*.toml` except the NimbOS suite, one trial each.

use vmharness::run::{FileResolver, Resolver};

fn main() {
    vmharness::suite::main(
        |name| !name.starts_with("nimbos-"),
        || Box::new(Resolver::from_env()) as Box<dyn FileResolver>,
    )
}
