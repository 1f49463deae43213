//! Every `vm-configs/*.toml` is a test: `cargo test --test vm`, `cargo nextest run`.
fn main() {
    vmharness::main()
}
