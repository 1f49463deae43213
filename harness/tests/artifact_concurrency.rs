//! Concurrent *processes* resolving one artifact share the cache: one build or download, every
//! process verified, and a lock holder killed mid-build does not block the next resolver.
//! Concurrent first uses record every artifact in one consistent guests.lock.
//!
//! The test binary re-executes itself: with `VMHARNESS_TEST_RESOLVE` set, it resolves one
//! artifact and prints `<file> <sha256>` per output instead of running tests.

mod artifact_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use artifact_support::{count_lines, counting_guests, sha256_hex, write, zip_bytes, Server};
use libtest_mimic::{Arguments, Trial};
use vmharness::artifact::{Catalog, LockMode, ResolveOptions};

const CHILD_ENV: &str = "VMHARNESS_TEST_RESOLVE";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        std::process::exit(child(&spec));
    }
    let trials = vec![
        Trial::test("eight_processes_build_once", eight_processes_build_once),
        Trial::test(
            "eight_processes_download_once",
            eight_processes_download_once,
        ),
        Trial::test(
            "killed_lock_holder_releases_the_lock",
            killed_lock_holder_releases_the_lock,
        ),
        Trial::test(
            "concurrent_first_uses_write_one_consistent_lock",
            concurrent_first_uses_write_one_consistent_lock,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

/// Child mode: `<guests dir>|<cache dir>|<artifact>[|first-use]` (lenient without the last).
fn child(spec: &str) -> i32 {
    let parts: Vec<&str> = spec.split('|').collect();
    let (guests, cache, name, mode) = match parts[..] {
        [guests, cache, name] => (guests, cache, name, LockMode::Lenient),
        [guests, cache, name, "first-use"] => (guests, cache, name, LockMode::FirstUse),
        _ => {
            eprintln!("bad {CHILD_ENV}: {spec}");
            return 2;
        }
    };
    let mut options = ResolveOptions::new(cache);
    options.lock_mode = mode;
    // Several names (`a,b,c`) are resolved in turn.
    let mut status = 0;
    for name in name.split(',') {
        let resolved =
            Catalog::load(Path::new(guests)).and_then(|catalog| catalog.resolve(name, &options));
        match resolved {
            Ok(resolved) => {
                for (file, path) in &resolved.files {
                    let bytes = std::fs::read(path).unwrap_or_default();
                    println!("{file} {}", sha256_hex(&bytes));
                }
            }
            Err(error) => {
                eprintln!("resolve failed: {error}");
                status = 1;
            }
        }
    }
    status
}

fn spawn_resolver(guests: &Path, cache: &Path, name: &str) -> Child {
    spawn_child(&format!("{}|{}|{name}", guests.display(), cache.display()))
}

fn spawn_child(spec: &str) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resolver")
}

/// Waits for a child with a deadline, so a lock that is never released fails the test.
fn finish(mut child: Child, deadline: Duration) -> (bool, String, String) {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let output = child.wait_with_output().expect("wait");
            return (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("resolver still blocked after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_eight(guests: &Path, cache: &Path, name: &str) -> Vec<String> {
    let children: Vec<Child> = (0..8)
        .map(|_| spawn_resolver(guests, cache, name))
        .collect();
    children
        .into_iter()
        .map(|child| {
            let (ok, stdout, stderr) = finish(child, Duration::from_secs(60));
            assert!(ok, "a resolver failed: {stderr}");
            stdout
        })
        .collect()
}

fn eight_processes_build_once() -> Result<(), libtest_mimic::Failed> {
    let tmp = tempfile::tempdir()?;
    // The sleep widens the window in which the others must wait rather than build too.
    let (guests, counter) = counting_guests(tmp.path(), "sleep 0.5");
    let outputs = run_eight(&guests, &tmp.path().join("cache"), "counted");
    let expected = format!("out.txt {}\n", sha256_hex(b"first\n"));
    assert!(outputs.iter().all(|o| *o == expected), "{outputs:?}");
    assert_eq!(count_lines(&counter), 1, "exactly one build");
    Ok(())
}

fn eight_processes_download_once() -> Result<(), libtest_mimic::Failed> {
    let server = Server::start();
    server.put("guest.zip", zip_bytes(&[("kernel.bin", b"KERNEL")]));
    let tmp = tempfile::tempdir()?;
    let guests = tmp.path().join("guests");
    write(
        &guests,
        "net.toml",
        &format!(
            "[zipped]\nkind = \"url\"\nurl = \"{}\"\narchive = \"zip\"\nfiles = {{ kernel = \"kernel.bin\" }}\n",
            server.url("guest.zip")
        ),
    );
    let outputs = run_eight(&guests, &tmp.path().join("cache"), "zipped");
    let expected = format!("kernel {}\n", sha256_hex(b"KERNEL"));
    assert!(outputs.iter().all(|o| *o == expected), "{outputs:?}");
    assert_eq!(server.requests(), 1, "exactly one download");
    Ok(())
}

/// Eight processes resolve the same sixteen artifacts, each starting at another one, that a
/// missing guests.lock does not pin: every entry ends up in the one lock file, as `guests lock`
/// would write it (no process's read-modify-write loses another's).
fn concurrent_first_uses_write_one_consistent_lock() -> Result<(), libtest_mimic::Failed> {
    let tmp = tempfile::tempdir()?;
    let guests = tmp.path().join("guests");
    let names: Vec<String> = (0..16).map(|i| format!("fw-{i}")).collect();
    for name in &names {
        write(
            &guests,
            &format!("{name}.toml"),
            &format!("[{name}]\nkind = \"path\"\npath = \"{name}.bin\"\n"),
        );
        write(&guests, &format!("{name}.bin"), name);
    }
    let cache = tmp.path().join("cache");
    let children: Vec<Child> = (0..8)
        .map(|start| {
            let mut order = names.clone();
            order.rotate_left(start * 2);
            spawn_child(&format!(
                "{}|{}|{}|first-use",
                guests.display(),
                cache.display(),
                order.join(",")
            ))
        })
        .collect();
    for child in children {
        let (ok, _, stderr) = finish(child, Duration::from_secs(60));
        assert!(ok, "a first use failed: {stderr}");
    }
    let catalog = Catalog::load(&guests)?;
    let mut record = ResolveOptions::new(&cache);
    record.lock_mode = LockMode::Record;
    for name in &names {
        let expected = catalog.resolve(name, &record)?.entry;
        assert_eq!(catalog.lock().get(name), Some(&expected), "{name}");
    }
    assert_eq!(catalog.lock().entries().count(), names.len());
    let leftovers: Vec<_> = std::fs::read_dir(&guests)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".toml") && !n.ends_with(".bin") && n != "guests.lock")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    Ok(())
}

// `?` after the spawn can return early; the holder is SIGKILLed or waited for on every other path.
#[allow(clippy::zombie_processes)]
fn killed_lock_holder_releases_the_lock() -> Result<(), libtest_mimic::Failed> {
    let tmp = tempfile::tempdir()?;
    let marker = tmp.path().join("marker");
    // First run: record the shell's pid and hang (as a build that never ends would).
    let hang = format!(
        "if [ ! -f '{m}' ]; then echo $$ > '{m}.tmp'; mv '{m}.tmp' '{m}'; exec sleep 60; fi",
        m = marker.display()
    );
    let (guests, counter) = counting_guests(tmp.path(), &hang);
    let cache = tmp.path().join("cache");
    let mut holder = spawn_resolver(&guests, &cache, "counted");
    let start = Instant::now();
    while !marker.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !marker.exists() {
        let _ = holder.kill();
        let _ = holder.wait();
        panic!("the first build never started");
    }
    let build_pid: i32 = std::fs::read_to_string(&marker)?.trim().parse()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let (ok, _, _) = finish(holder, Duration::from_secs(10));
    assert!(!ok, "the holder was killed");

    let (ok, stdout, stderr) = finish(
        spawn_resolver(&guests, &cache, "counted"),
        Duration::from_secs(30),
    );
    assert!(ok, "the next resolver failed: {stderr}");
    assert_eq!(stdout, format!("out.txt {}\n", sha256_hex(b"first\n")));
    assert_eq!(
        count_lines(&counter),
        2,
        "the killed build, then one complete build"
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(cache.join("counted"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "stale staging dirs were not removed: {leftovers:?}"
    );
    assert!(
        gone(build_pid, Duration::from_secs(5)),
        "the killed resolver's build {build_pid} lives on"
    );
    Ok(())
}

/// True once `pid` has exited (absent or a zombie awaiting its reaper).
fn gone(pid: i32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}
