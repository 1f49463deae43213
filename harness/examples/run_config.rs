//! Runs one VM config and prints its report: `cargo run -p vmharness --example run_config --
//! vm-configs/selftest-aarch64.toml`. The exit code is the verdict's (0 pass, 1 fail, ...).

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: run_config <vm-config.toml>");
        std::process::exit(2);
    };
    match vmharness::run::run_file(path.as_ref()) {
        Ok(report) => {
            println!("{report}");
            std::process::exit(report.outcome.exit_code());
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    }
}
