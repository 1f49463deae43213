//! `SOURCE_DATE_EPOCH` fixes image timestamps. One test in its own binary, because it sets a
//! process-wide environment variable.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use vmharness::disk::{DiskError, ImageBuilder, SOURCE_DATE_EPOCH};

#[test]
fn source_date_epoch_sets_every_timestamp() -> Result<()> {
    let work = tempfile::tempdir()?;
    let build = |name: &str| {
        ImageBuilder::new()
            .add_bytes("/dir/run.sh", b"echo hi\n".to_vec())
            .build(&work.path().join(name))
    };
    let default = build("default.img")?;
    std::env::set_var(SOURCE_DATE_EPOCH, "1700000000"); // 2023-11-14 22:13:20 UTC
    let dated = build("dated.img")?;
    std::env::set_var(SOURCE_DATE_EPOCH, "yesterday");
    let error = build("bad.img").err().context("expected an error")?;
    std::env::remove_var(SOURCE_DATE_EPOCH);
    ensure!(
        matches!(error, DiskError::InvalidSourceDateEpoch { .. }),
        "{error}"
    );
    let listing = |image: &std::path::Path| -> Result<String> {
        let output = Command::new("mdir")
            .args(["-i", image.to_str().context("utf-8")?, "::/dir"])
            .output()
            .context("cannot run mdir; install the `mtools` package")?;
        ensure!(output.status.success(), "mdir failed");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let dated_listing = listing(&dated.path)?;
    ensure!(
        dated_listing.contains("2023-11-14  22:13"),
        "{dated_listing}"
    );
    let default_listing = listing(&default.path)?;
    ensure!(
        default_listing.contains("1980-01-01   0:00"),
        "{default_listing}"
    );
    Ok(())
}
