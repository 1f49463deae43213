//! `SOURCE_DATE_EPOCH` fixes image timestamps: read by the settings, given to the builder.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use vmharness::disk::ImageBuilder;
use vmharness::settings::Settings;

fn settings(epoch: &str) -> Result<Settings, vmharness::settings::SettingsError> {
    let vars = BTreeMap::from([("SOURCE_DATE_EPOCH".to_string(), OsString::from(epoch))]);
    Settings::from_vars(vars, Path::new("/w"))
}

#[test]
fn source_date_epoch_sets_every_timestamp() -> Result<()> {
    let work = tempfile::tempdir()?;
    let build = |name: &str, epoch: Option<u64>| {
        let mut builder = ImageBuilder::new().add_bytes("/dir/run.sh", b"echo hi\n".to_vec());
        if let Some(epoch) = epoch {
            builder = builder.timestamp(epoch);
        }
        builder.build(&work.path().join(name))
    };
    let default = build("default.img", None)?;
    let epoch = settings("1700000000")?.source_date_epoch; // 2023-11-14 22:13:20 UTC
    ensure!(epoch == Some(1_700_000_000), "{epoch:?}");
    let dated = build("dated.img", epoch)?;
    for bad in ["yesterday", "-1", "1.5"] {
        let error = settings(bad).err().context("expected an error")?;
        ensure!(error.to_string().contains("SOURCE_DATE_EPOCH"), "{error}");
    }
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
