//! The `[disk]` section of a VM config becomes an image: sources resolved through the resolver,
//! inline text written, entry mistakes named by their config index. The FAT32 writer itself is
//! tested in `crates/fat32-image/tests`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use vmharness::disk::{DiskError, DiskSpec, ResolveFailure};
use vmharness::fileref::FileRef;

/// Runs a dosfstools/mtools program on `image` and returns its stdout; it must succeed.
fn tool(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .with_context(|| format!("cannot run `{program}`; install dosfstools and mtools"))?;
    ensure!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn disk_spec_builds_with_a_resolver() -> Result<()> {
    let work = tempfile::tempdir()?;
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(work.path().join("payload.bin"), &payload)?;
    let spec: DiskSpec = toml::from_str(
        r#"
        label = "VMH"
        [[entries]]
        source = "payload.bin"
        dest = "/guest/payload.bin"
        [[entries]]
        dest = "/run.sh"
        text = "echo hello from fat32\n"
        "#,
    )?;
    let base = work.path().to_path_buf();
    let resolve = move |source: &FileRef| -> Result<PathBuf, ResolveFailure> {
        Ok(base.join(source.to_string()))
    };
    let image = spec.build(&resolve, &work.path().join("spec.img"))?;
    let path = image.path.to_str().context("utf-8 path")?;
    let fsck = tool("fsck.fat", &["-n", path])?;
    ensure!(fsck.lines().count() == 2, "fsck.fat complained:\n{fsck}");
    let out = work.path().join("payload.out");
    tool(
        "mcopy",
        &[
            "-n",
            "-i",
            path,
            "::/guest/payload.bin",
            out.to_str().context("utf-8")?,
        ],
    )?;
    ensure!(fs::read(&out)? == payload, "payload differs");
    let script = tool("mtype", &["-i", path, "::/run.sh"])?;
    ensure!(script == "echo hello from fat32\n", "{script:?}");
    let label = tool("mlabel", &["-s", "-i", path, "::"])?;
    ensure!(label.contains("VMH"), "{label}");
    ensure!(
        spec.attach.driver() == "virtio-blk-pci",
        "{:?}",
        spec.attach
    );
    Ok(())
}

#[test]
fn spec_errors_name_the_entry() -> Result<()> {
    let spec: DiskSpec = toml::from_str("[[entries]]\ndest = \"/a\"\nsource = \"artifact:x/y\"\n[[entries]]\ndest = \"/b\"\ntext = \"t\"\nsource = \"s\"")?;
    let refuse = |source: &FileRef| -> Result<PathBuf, ResolveFailure> {
        match source {
            FileRef::Artifact(_) => Err("no artifact cache".into()),
            other => Ok(PathBuf::from(other.to_string())),
        }
    };
    let work = tempfile::tempdir()?;
    let error = spec
        .build(&refuse, &work.path().join("x.img"))
        .err()
        .context("expected an error")?;
    // The resolver's reason is kept as the typed cause, not flattened into the message.
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    ensure!(
        error.to_string().contains("entry 1") && cause.as_deref() == Some("no artifact cache"),
        "{error} / {cause:?}"
    );
    let mut second_only = spec.clone();
    second_only.entries.remove(0);
    let error = second_only
        .build(&refuse, &work.path().join("x.img"))
        .err()
        .context("expected an error")?;
    ensure!(matches!(error, DiskError::InvalidEntry { .. }), "{error}");
    ensure!(fs::read_dir(work.path())?.count() == 0);
    Ok(())
}
