//! The Linux guest builds from Debian's archive as a non-root user with the host's own apt
//! sources hidden: its packages come through the private apt configuration, never through
//! `/etc/apt`. Run as root, the test re-runs itself in a private mount namespace where
//! `/etc/apt/sources.list{,.d}` are empty, as user `nobody`, with a fresh cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use vmharness_artifact::{Catalog, LockStatus, ResolveOptions};

const CHILD_ENV: &str = "VMHARNESS_TEST_ROOTLESS_CHILD";
const TEST_NAME: &str = "the_linux_guest_builds_as_nobody_with_the_hosts_apt_sources_hidden";
const ARTIFACT: &str = "linux-x86_64";

#[test]
fn the_linux_guest_builds_as_nobody_with_the_hosts_apt_sources_hidden() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let exe = std::env::current_exe().unwrap();
    let mut command = if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let empty = dir.join("empty-sources.d");
        std::fs::create_dir(&empty).unwrap();
        let script = r#"set -e
mount --bind "$1" /etc/apt/sources.list.d
if [ -e /etc/apt/sources.list ]; then mount --bind /dev/null /etc/apt/sources.list; fi
shift
exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@""#;
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&empty);
        command.arg(&exe);
        command.env("VMHARNESS_TEST_SOURCES_HIDDEN", "1");
        command
    } else {
        eprintln!(
            "note: not root: the host's apt sources stay visible; the build runs as this user"
        );
        Command::new(&exe)
    };
    let output = command
        .args(["--exact", TEST_NAME, "--nocapture"])
        .env(CHILD_ENV, &dir)
        .env("HOME", &dir)
        .env("TMPDIR", &dir)
        .output()
        .expect("spawn the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("child built "), "{stdout}\n{stderr}");
}

fn child(dir: &Path) {
    assert!(
        !nix::unistd::geteuid().is_root(),
        "the child must not be root"
    );
    if std::env::var_os("VMHARNESS_TEST_SOURCES_HIDDEN").is_some() {
        let policy = Command::new("apt-cache")
            .args(["policy", "linux-image-amd64"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&policy.stdout);
        assert!(
            !text.contains("Candidate: 6") && !text.contains("debian.org"),
            "the host's apt must see no sources here: {text}"
        );
    }
    let catalog =
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests")).unwrap();
    let options = ResolveOptions::new(dir.join("cache"));
    let resolved = catalog
        .resolve(ARTIFACT, &options)
        .unwrap_or_else(|e| panic!("{e}"));
    for file in resolved.files.values() {
        assert!(file.starts_with(dir), "{}", file.display());
        assert!(
            std::fs::metadata(file).unwrap().len() > 1 << 20,
            "{}",
            file.display()
        );
    }
    assert_eq!(resolved.packages.len(), 2, "{:?}", resolved.packages);
    // Where the lock recorded this key, the bytes are the same as the root build's.
    if let LockStatus::Locked = resolved.status {
        let pinned = &catalog.lock().get(ARTIFACT).unwrap().outputs;
        assert_eq!(&resolved.entry.outputs, pinned);
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("cache/apt"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!dirs.is_empty(), "the private apt root lives in the cache");
    println!(
        "child built {ARTIFACT} from {} ({})",
        resolved
            .packages
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        resolved.status.describe()
    );
}
