//! `cargo test --test boot`: every `vm-configs/*.toml` except the NimbOS suite, one trial each.

fn main() {
    vmharness::Suite::new()
        .select(|name| !name.starts_with("nimbos-"))
        .main()
}
