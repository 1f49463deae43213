//! The NimbOS artifact path end to end, against a local HTTP server on 127.0.0.1: download a
//! release-style zip, verify it against `guests.lock`, unpack `nimbos.bin` under its disk name,
//! build the FAT32 disk, check it with mtools, and boot U-Boot (aarch64) on it to read the file
//! back and compare its crc32. Also: a lock mismatch is an infrastructure failure that leaves
//! nothing current in the cache, and an unreachable server skips (or fails when required).

mod artifact_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use artifact_support::{sha256_hex, write, zip_bytes, Server};
use vmharness::artifact::key::recipe_key;
use vmharness::artifact::{Catalog, LockEntry, ResolveOptions, RetryPolicy};
use vmharness::config::LoadedConfig;
use vmharness::outcome::Report;
use vmharness::run::{self, FileResolver, Resolver, RunOptions};

const ARTIFACT: &str = "nimbos-test";
const DISK_NAME: &str = "nimbos-aarch64.bin";
const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// Set in a child copy of this binary: the config to run, with the environment under test.
const CHILD_ENV: &str = "VMHARNESS_PIPELINE_CHILD_CONFIG";

/// Deterministic pseudo-random bytes standing in for a NimbOS image (xorshift64).
fn guest_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A guests dir with a `url` recipe like guests/nimbos.toml's, pointing at `url`.
fn guests_dir(root: &Path, url: &str) -> PathBuf {
    let guests = root.join("guests");
    write(
        &guests,
        "nimbos.toml",
        &format!(
            "[{ARTIFACT}]\nkind = \"url\"\nurl = \"{url}\"\narchive = \"zip\"\n\
             files = {{ \"{DISK_NAME}\" = \"nimbos.bin\" }}\n"
        ),
    );
    guests
}

/// Pins the artifact in the guests dir's lock: sha256 of the zip and of the unpacked file.
fn pin(guests: &Path, zip: &[u8], contents: &[u8]) {
    let catalog = Catalog::load(guests).expect("catalog loads");
    let recipe = catalog.recipe(ARTIFACT).expect("recipe exists");
    let key = recipe_key(recipe, guests, &[]).expect("recipe key").key;
    let mut lock = catalog.lock().clone();
    lock.insert(
        ARTIFACT,
        LockEntry {
            key,
            download: Some(sha256_hex(zip)),
            inputs: Default::default(),
            outputs: [(DISK_NAME.to_string(), sha256_hex(contents))].into(),
        },
    );
    lock.save().expect("lock saves");
}

fn options(root: &Path) -> ResolveOptions {
    let mut options = ResolveOptions::new(root.join("cache"));
    options.retry = RetryPolicy {
        attempts: 2,
        first_backoff: std::time::Duration::from_millis(20),
    };
    options
}

/// A VM config: U-Boot as `-bios`, the artifact on a 64 MiB FAT32 disk on virtio-blk-pci,
/// and the console steps that list the disk and checksum the file.
fn uboot_config(dir: &Path, crc: u32) -> PathBuf {
    let text = format!(
        r#"arch = "aarch64"
accel = "tcg"
[qemu]
machine = "virt"
cpu = "cortex-a57"
bios = "{UBOOT}"
exit_device = false
[disk]
size = "64M"
attach = "virtio-blk-pci"
[[disk.entries]]
source = "artifact:{ARTIFACT}/{DISK_NAME}"
dest = "/{DISK_NAME}"
[console]
banner = ["Hit any key to stop autoboot"]
steps = [
    {{ send = " " }},
    {{ expect = "^=> " }},
    {{ send_line = "virtio scan" }},
    {{ expect = "^=> " }},
    {{ send_line = "fatls virtio 0" }},
    {{ expect = "^ *\\d+ +nimbos-aarch64\\.bin" }},
    {{ expect = "^=> " }},
    {{ send_line = "fatload virtio 0 ${{loadaddr}} {DISK_NAME}" }},
    {{ expect = "bytes read" }},
    {{ expect = "^=> " }},
    {{ send_line = "crc32 ${{loadaddr}} ${{filesize}}" }},
]
success = "==> {crc:08x}"
[timeouts]
total = "60s"
step = "20s"
no_output = "20s"
"#
    );
    let path = dir.join("nimbos-uboot.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn load(path: &Path) -> LoadedConfig {
    vmharness::config::load(path).expect("config loads")
}

fn run_with(loaded: &LoadedConfig, resolver: &dyn FileResolver, logs: &Path) -> Report {
    let options = RunOptions {
        log_dir: Some(logs.join(&loaded.name)),
        ..RunOptions::default()
    };
    run::run(loaded, resolver, options)
}

/// `mdir` lists the file and `mcopy` gets back exactly `expected`.
fn assert_on_image(image: &Path, expected: &[u8], scratch: &Path) {
    let image_arg = image.to_str().expect("utf-8 temp path");
    let listing = Command::new("mdir")
        .args(["-i", image_arg, "-b", "::/"])
        .output()
        .expect("run mdir (mtools)");
    assert!(listing.status.success(), "mdir: {listing:?}");
    let listed = String::from_utf8_lossy(&listing.stdout);
    assert!(listed.contains(&format!("::/{DISK_NAME}")), "{listed}");
    let copy = scratch.join("copied.bin");
    let status = Command::new("mcopy")
        .args(["-n", "-i", image_arg])
        .arg(format!("::/{DISK_NAME}"))
        .arg(&copy)
        .status()
        .expect("run mcopy (mtools)");
    assert!(status.success(), "mcopy failed");
    let copied = std::fs::read(&copy).expect("read the copied file");
    assert!(copied == expected, "the file on the image differs");
}

#[test]
fn download_verify_unpack_disk_and_boot_uboot_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let contents = guest_bytes(300 * 1024 + 17, 0x6e69_6d62_6f73);
    let zip = zip_bytes(&[("nimbos.bin", &contents)]);
    let server = Server::start();
    server.put("v0.7/aarch64_usertests.zip", zip.clone());
    let guests = guests_dir(tmp.path(), &server.url("v0.7/aarch64_usertests.zip"));
    pin(&guests, &zip, &contents);
    let catalog = Catalog::load(&guests).unwrap();
    let resolver = Resolver::new(catalog.clone(), options(tmp.path()));

    // Resolve and build the disk as the run does, then inspect it with mtools.
    let config = uboot_config(tmp.path(), crc32fast::hash(&contents));
    let loaded = load(&config);
    let spec = loaded.config.disk.clone().expect("config has a [disk]");
    let settings = vmharness::settings::Settings::from_env().expect("usable environment");
    let resolve = |source: &vmharness::fileref::FileRef| {
        run::resolve_ref(source, tmp.path(), &resolver, &settings).map_err(Into::into)
    };
    let image = tmp.path().join("disk.img");
    let built = spec.build(&resolve, &image).expect("disk builds");
    assert_eq!(built.size_bytes, 64 << 20);
    assert_on_image(&image, &contents, tmp.path());
    assert_eq!(server.requests(), 1, "one download");

    // Boot U-Boot on the same disk: it must list the file and read it back bit-exact.
    let report = run_with(&loaded, &resolver, &tmp.path().join("logs"));
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(server.requests(), 1, "the boot used the cached artifact");
    let console = std::fs::read_to_string(&report.log_path).unwrap();
    assert!(console.contains(DISK_NAME), "{console}");
}

#[test]
fn changed_download_is_infra_and_nothing_becomes_current() {
    let tmp = tempfile::tempdir().unwrap();
    let pinned = guest_bytes(4096, 1);
    let pinned_zip = zip_bytes(&[("nimbos.bin", &pinned)]);
    let served = guest_bytes(4096, 2);
    let served_zip = zip_bytes(&[("nimbos.bin", &served)]);
    let server = Server::start();
    server.put("nimbos.zip", served_zip.clone());
    let guests = guests_dir(tmp.path(), &server.url("nimbos.zip"));
    pin(&guests, &pinned_zip, &pinned);
    let catalog = Catalog::load(&guests).unwrap();
    let key = recipe_key(catalog.recipe(ARTIFACT).unwrap(), &guests, &[])
        .unwrap()
        .key;
    let resolver = Resolver::new(catalog, options(tmp.path()));

    let loaded = load(&uboot_config(tmp.path(), crc32fast::hash(&pinned)));
    let report = run_with(&loaded, &resolver, &tmp.path().join("logs"));
    assert!(
        report.outcome.is_infra(),
        "expected an infrastructure failure: {report}"
    );
    let reason = report.outcome.explained();
    assert!(reason.contains("[disk]"), "{reason}");
    assert!(reason.contains(&sha256_hex(&pinned_zip)), "{reason}");
    assert!(reason.contains(&sha256_hex(&served_zip)), "{reason}");
    assert!(report.qemu_command.is_none(), "QEMU must not start");

    let cache = vmharness::artifact::cache::Cache::new(tmp.path().join("cache"));
    assert!(!cache.artifact_dir(ARTIFACT, &key).exists());
    assert!(!cache.object_path(&sha256_hex(&served_zip)).exists());
}

/// Runs `config` in a child copy of this binary with `require` as VMHARNESS_REQUIRE_ARTIFACTS;
/// returns the child's outcome label and detail.
fn run_in_child(config: &Path, require: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runs_the_config", "--nocapture"])
        .env(CHILD_ENV, config)
        .env("VMHARNESS_REQUIRE_ARTIFACTS", require)
        .output()
        .expect("spawn the child test");
    assert!(output.status.success(), "child failed: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("child outcome: "))
        .unwrap_or_else(|| panic!("child printed no outcome: {stdout}"))
        .to_string()
}

#[test]
fn unreachable_server_skips_and_fails_when_required() {
    let tmp = tempfile::tempdir().unwrap();
    // A port that was just free and is now closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let guests = guests_dir(
        tmp.path(),
        &format!("http://127.0.0.1:{port}/aarch64_usertests.zip"),
    );
    assert!(guests.join("nimbos.toml").is_file());
    let config = uboot_config(tmp.path(), 0);

    let skipped = run_in_child(&config, "0");
    assert!(skipped.starts_with("UNAVAILABLE "), "{skipped}");
    assert!(skipped.contains(ARTIFACT), "{skipped}");
    let required = run_in_child(&config, "1");
    assert!(required.starts_with("INFRA "), "{required}");
    assert!(
        required.contains("VMHARNESS_REQUIRE_ARTIFACTS"),
        "{required}"
    );
}

/// Child mode of [`unreachable_server_skips_and_fails_when_required`]; a no-op otherwise.
#[test]
fn child_runs_the_config() {
    let Some(config) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let root = config.parent().expect("config has a parent dir");
    let catalog = Catalog::load(&root.join("guests")).expect("catalog loads");
    let resolver = Resolver::new(catalog, options(root));
    let report = run_with(&load(&config), &resolver, &root.join("logs"));
    println!(
        "child outcome: {} {}",
        report.outcome.label(),
        report.outcome
    );
}

/// The `nimbos-standalone-*` configs' own `[results.cases]`, applied to real NimbOS v0.7
/// consoles: every usertest becomes a passing sub-result (`stack_overflow` by its intended -1).
/// The `nimbos-<arch>` (AxVisor) and `nimbos-shell-<arch>` configs declare one `[[case]]` per
/// usertest of that console, each expecting the program's own pass line as the console shows
/// it, then the shell's exit line in the console's format.
#[test]
fn nimbos_configs_turn_each_usertest_into_a_sub_result() {
    use vmharness::console::{AnsiStripper, LineSplitter};
    let root = vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .root;
    for arch in ["x86_64", "aarch64", "riscv64"] {
        let loaded = load(&root.join(format!("vm-configs/nimbos-standalone-{arch}.toml")));
        let section = loaded
            .config
            .results
            .clone()
            .expect("nimbos configs have [results]");
        let log = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "src/results/testdata/nimbos-v0.7-shell-usertests-{arch}.log"
        )))
        .unwrap();
        let (mut stripper, mut splitter) = (AnsiStripper::new(), LineSplitter::default());
        let (mut clean, mut pieces) = (Vec::new(), Vec::new());
        stripper.feed(&log, &mut clean);
        splitter.feed(&clean, &mut pieces);
        let mut collector = vmharness::results::Collector::new(&section);
        for piece in &pieces {
            collector.line(&piece.text);
        }
        let results = collector.finish();
        assert_eq!(results.cases.len(), 13, "{arch}: {results:#?}");
        assert_eq!(results.failure_reason(), None, "{arch}");

        for hosted in [format!("nimbos-{arch}"), format!("nimbos-shell-{arch}")] {
            let hosted = load(&root.join(format!("vm-configs/{hosted}.toml")));
            let mut programs: Vec<String> = results
                .cases
                .iter()
                .map(|c| c.name.trim().to_string())
                .collect();
            let mut cases: Vec<String> =
                hosted.config.cases.iter().map(|c| c.name.clone()).collect();
            programs.sort();
            cases.sort();
            assert_eq!(cases, programs, "{arch}: one case per usertest program");
            let exit_line = pieces
                .iter()
                .map(|p| p.text.clone())
                .find(|t| t.starts_with("Shell: Process"))
                .expect("the console has the shell's exit line");
            let lines: Vec<&str> = pieces.iter().map(|p| p.text.as_str()).collect();
            for case in &hosted.config.cases {
                let expects: Vec<_> = case
                    .steps
                    .iter()
                    .filter_map(|step| match step {
                        vmharness::config::Step::Expect { pattern, .. } => Some(pattern),
                        _ => None,
                    })
                    .collect();
                let (last, own) = expects.split_last().expect("a case expects the exit line");
                let shown = match case.name.as_str() {
                    "stack_overflow" => exit_line.replace("code 0", "code -1"),
                    _ => exit_line.clone(),
                };
                assert!(
                    last.0.is_match(&shown),
                    "{arch} {}: {last} vs `{shown}`",
                    case.name
                );
                // The program's own pass line, where the case expects one, is in the real console.
                for pattern in own {
                    assert!(
                        lines.iter().any(|line| pattern.0.is_match(line)),
                        "{arch} {}: no console line matches {pattern}",
                        case.name
                    );
                }
            }
        }
    }
}
