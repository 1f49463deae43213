//! Bad input to the FAT32 builder gives a clear error and leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use fat32_image::{DiskSize, ImageBuilder, ImageError, Layout};

/// Builds into a fresh directory; returns the error and checks no file was left there.
fn build_err(builder: ImageBuilder) -> Result<ImageError> {
    let out_dir = tempfile::tempdir()?;
    let error = match builder.build(&out_dir.path().join("out.img")) {
        Ok(image) => anyhow::bail!("expected an error, built {image:?}"),
        Err(error) => error,
    };
    let left: Vec<PathBuf> = fs::read_dir(out_dir.path())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    ensure!(
        left.is_empty(),
        "files left behind after `{error}`: {left:?}"
    );
    Ok(error)
}

fn file_of(dir: &Path, name: &str, len: usize) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, vec![0xA5; len])?;
    Ok(path)
}

#[test]
fn content_larger_than_image_says_needed_and_available() -> Result<()> {
    let work = tempfile::tempdir()?;
    let big = file_of(work.path(), "big.bin", 40 << 20)?;
    let error = build_err(
        ImageBuilder::new()
            .add_host(&big, "/big.bin")
            .size(DiskSize::Bytes(34 << 20)),
    )?;
    let ImageError::ContentTooLarge {
        needed,
        available,
        fitting,
        ..
    } = &error
    else {
        anyhow::bail!("wrong error: {error}");
    };
    ensure!(
        *needed > 40 << 20 && *available < 34 << 20 && *fitting > 40 << 20,
        "{error}"
    );
    let message = error.to_string();
    ensure!(
        message.contains(&needed.to_string()) && message.contains(&available.to_string()),
        "{message}"
    );
    // The size the error suggests really fits.
    let image = ImageBuilder::new()
        .add_host(&big, "/big.bin")
        .size(DiskSize::Bytes(*fitting))
        .build(&work.path().join("fits.img"))?;
    ensure!(image.size_bytes == *fitting);
    Ok(())
}

#[test]
fn size_below_fat32_minimum_names_the_minimum() -> Result<()> {
    for (layout, minimum) in [(Layout::None, 33u64 << 20), (Layout::Mbr, 34 << 20)] {
        let error = build_err(
            ImageBuilder::new()
                .size(DiskSize::Bytes(16 << 20))
                .layout(layout),
        )?;
        ensure!(
            matches!(error, ImageError::BelowMinimum { minimum: m, .. } if m == minimum),
            "{layout}: {error}"
        );
        ensure!(
            error
                .to_string()
                .contains(&format!("{} MiB", minimum >> 20)),
            "{error}"
        );
        let work = tempfile::tempdir()?;
        let image = ImageBuilder::new()
            .size(DiskSize::Bytes(minimum))
            .layout(layout)
            .build(&work.path().join("min.img"))?;
        ensure!(
            image.clusters >= 65525,
            "minimum image has {} clusters",
            image.clusters
        );
    }
    Ok(())
}

#[test]
fn destinations_cannot_escape_the_root() -> Result<()> {
    for dest in ["/../etc/passwd", "a/../../b", ".."] {
        let error = build_err(ImageBuilder::new().add_bytes(dest, b"x".to_vec()))?;
        ensure!(
            matches!(error, ImageError::PathEscapesRoot { .. }),
            "{dest}: {error}"
        );
    }
    let error = build_err(ImageBuilder::new().add_bytes("/", b"x".to_vec()))?;
    ensure!(matches!(error, ImageError::InvalidDest { .. }), "{error}");
    Ok(())
}

#[test]
fn names_fat_cannot_hold_are_rejected() -> Result<()> {
    for dest in [
        "/a:b",
        "/what?",
        "/dir/trailing.",
        "/tab\there",
        "/back\\slash",
    ] {
        let error = build_err(ImageBuilder::new().add_bytes(dest, b"x".to_vec()))?;
        ensure!(
            matches!(error, ImageError::InvalidName { .. }),
            "{dest}: {error}"
        );
    }
    let work = tempfile::tempdir()?;
    file_of(work.path(), "star*name", 1)?;
    let error = build_err(ImageBuilder::new().add_host(work.path(), "/"))?;
    ensure!(error.to_string().contains("star*name"), "{error}");
    let error = build_err(ImageBuilder::new().label("much too long label"))?;
    ensure!(matches!(error, ImageError::InvalidLabel { .. }), "{error}");
    Ok(())
}

#[test]
fn duplicate_destinations_name_both_entries() -> Result<()> {
    let error = build_err(
        ImageBuilder::new()
            .add_bytes("/boot/A.TXT", b"1".to_vec())
            .add_bytes("/boot/a.txt", b"2".to_vec()),
    )?;
    ensure!(error.to_string().contains("entry 1 and entry 2"), "{error}");
    let error = build_err(
        ImageBuilder::new()
            .add_bytes("/boot", b"1".to_vec())
            .add_bytes("/boot/x", b"2".to_vec()),
    )?;
    ensure!(
        matches!(error, ImageError::DuplicateDest { .. }),
        "file used as a directory: {error}"
    );
    Ok(())
}

#[test]
fn missing_sources_and_odd_files_are_reported() -> Result<()> {
    let error = build_err(ImageBuilder::new().add_host("/nonexistent/nimbos.bin", "/n.bin"))?;
    ensure!(
        matches!(&error, ImageError::Source { path, .. } if path.ends_with("nimbos.bin")),
        "{error}"
    );
    let error = build_err(ImageBuilder::new().add_host("/dev/null", "/null"))?;
    ensure!(
        matches!(error, ImageError::UnsupportedFileType { .. }),
        "{error}"
    );
    let work = tempfile::tempdir()?;
    fs::create_dir(work.path().join("sub"))?;
    std::os::unix::fs::symlink(work.path(), work.path().join("sub/loop"))?;
    let error = build_err(ImageBuilder::new().add_host(work.path(), "/"))?;
    ensure!(matches!(error, ImageError::SymlinkLoop { .. }), "{error}");
    Ok(())
}

#[test]
fn failure_while_writing_keeps_the_old_image_and_leaves_no_temp_file() -> Result<()> {
    // sysfs reports 4096 bytes but yields fewer: the copy fails after the temp file exists.
    let short_read = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    ensure!(
        fs::metadata(short_read).context("sysfs needed")?.len()
            > fs::read(short_read)?.len() as u64
    );
    let work = tempfile::tempdir()?;
    let out = work.path().join("out.img");
    fs::write(&out, "previous image")?;
    let error = ImageBuilder::new()
        .add_host(short_read, "/thp")
        .build(&out)
        .err()
        .context("expected an error")?;
    ensure!(matches!(error, ImageError::SourceChanged { .. }), "{error}");
    ensure!(
        fs::read(&out)? == b"previous image",
        "old image was touched"
    );
    ensure!(
        fs::read_dir(work.path())?.count() == 1,
        "temp file left behind"
    );
    Ok(())
}
