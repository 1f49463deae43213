//! Where a run's logs go: its own directory `logs/<test>/<run>` (so two runs of one test never
//! overwrite each other), a `latest` link to the newest, and the oldest pruned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many runs of one test are kept.
pub const KEPT_RUNS: usize = 5;

/// The name of the link to a test's newest run.
pub(crate) const LATEST: &str = "latest";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates `<logs>/<test>/<seconds>-<pid>-<n>` and prunes all but the newest [`KEPT_RUNS`]
/// runs whose process has ended.
pub fn new_run_dir(logs: &Path, test: &str) -> std::io::Result<PathBuf> {
    let test_dir = logs.join(test);
    std::fs::create_dir_all(&test_dir)?;
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run = format!(
        "{seconds:011}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = test_dir.join(run);
    std::fs::create_dir(&dir)?;
    prune(&test_dir);
    Ok(dir)
}

/// Points `<test dir>/latest` at `run_dir` (atomically: a reader sees the old or the new run).
pub fn mark_latest(run_dir: &Path) -> std::io::Result<()> {
    let (Some(test_dir), Some(name)) = (run_dir.parent(), run_dir.file_name()) else {
        return Ok(());
    };
    let temp = test_dir.join(format!(".{LATEST}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(name, &temp)?;
    std::fs::rename(&temp, test_dir.join(LATEST))
}

/// The newest run of `test` (through `latest`).
pub fn latest_dir(logs: &Path, test: &str) -> PathBuf {
    logs.join(test).join(LATEST)
}

/// The pid in a run directory's name.
fn owner(name: &str) -> Option<i32> {
    name.split('-').nth(1)?.parse().ok()
}

fn prune(test_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(test_dir) else {
        return;
    };
    let mut runs: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| owner(name).is_some())
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(KEPT_RUNS);
    for name in runs.into_iter().take(excess) {
        let mine = owner(&name) == Some(std::process::id() as i32);
        let alive = owner(&name).is_some_and(crate::temp::alive);
        if !alive || mine {
            let _ = std::fs::remove_dir_all(test_dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_get_their_own_dirs_and_old_ones_go() {
        let logs = tempfile::tempdir().unwrap();
        let mut dirs = Vec::new();
        for _ in 0..KEPT_RUNS + 3 {
            let dir = new_run_dir(logs.path(), "t").unwrap();
            std::fs::write(dir.join("console.log"), "x").unwrap();
            mark_latest(&dir).unwrap();
            dirs.push(dir);
        }
        let kept = std::fs::read_dir(logs.path().join("t"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != LATEST)
            .count();
        assert_eq!(kept, KEPT_RUNS);
        let newest = dirs.last().unwrap();
        assert!(newest.exists() && !dirs[0].exists());
        assert_eq!(
            std::fs::canonicalize(latest_dir(logs.path(), "t")).unwrap(),
            std::fs::canonicalize(newest).unwrap()
        );
    }
}
