//! FAT32 images checked by tools we did not write: `fsck.fat -n` (dosfstools), `mcopy` (mtools)
//! and the `fatfs` crate as an independent reader.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use fat32_image::{BuiltImage, DiskSize, ImageBuilder, Layout};

/// Runs a tool from `package`; a missing tool fails the test and says what to install.
///
/// Under a UTF-8 locale whatever the caller's is: mtools maps long names through the locale and
/// writes `_` for every non-ASCII character under `C` (a bare machine with no `LANG`).
fn run_tool(program: &str, package: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(|error| {
        anyhow::anyhow!("cannot run `{program}` ({error}); install the `{package}` package (apt-get install {package})")
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    Ok(text)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A host tree with `files` files in nested directories and names that exercise every naming
/// path: exact 8.3, lowercase 8.3 (case bits), long, mixed case, Unicode, leading dot, empty.
fn make_tree(root: &Path, files: usize) -> Result<()> {
    let names = [
        "DATA.BIN",
        "kernel.bin",
        "nimbos-aarch64.bin",
        "Makefile",
        "ünïcode [x].txt",
        ".config",
        "a b c.tar.gz",
        "x",
    ];
    let sizes = [0usize, 1, 511, 512, 513, 4096, 12_345, 100];
    for index in 0..files {
        let dir = root
            .join(format!("level{}", index % 7))
            .join(format!("Sub Dir {}", index % 13));
        fs::create_dir_all(&dir)?;
        let name = format!("{}-{index}", names[index % names.len()]);
        let name = if index % 5 == 0 {
            names[index % names.len()].to_string()
        } else {
            name
        };
        let path = dir.join(&name);
        if !path.exists() {
            fs::write(&path, pattern(index as u64, sizes[index % sizes.len()]))?;
        }
    }
    fs::create_dir_all(root.join("empty dir"))?;
    Ok(())
}

/// Every file under `root`, by `/`-relative path, with its bytes.
fn read_host_tree(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                files.insert(rel, fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// Every file in a FAT volume, read with fatfs; the volume must be FAT32.
fn read_with_fatfs(volume: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = fs::OpenOptions::new().read(true).write(true).open(volume)?;
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).context("fatfs mount")?;
    ensure!(
        fs.fat_type() == fatfs::FatType::Fat32,
        "fatfs sees {:?}",
        fs.fat_type()
    );
    let mut files = BTreeMap::new();
    let mut stack = vec![(fs.root_dir(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if entry.is_dir() {
                stack.push((entry.to_dir(), path));
            } else {
                let mut data = Vec::new();
                entry.to_file().read_to_end(&mut data)?;
                files.insert(path, data);
            }
        }
    }
    Ok(files)
}

/// The FAT32 volume of an image as its own file (fsck.fat needs a file, not an offset).
fn volume_file(image: &BuiltImage, dir: &Path) -> Result<PathBuf> {
    if image.volume_offset == 0 {
        return Ok(image.path.clone());
    }
    let bytes = fs::read(&image.path)?;
    ensure!(bytes[510..512] == [0x55, 0xAA], "MBR signature missing");
    ensure!(
        bytes[446 + 4] == 0x0C,
        "partition type is {:#x}, want 0x0C",
        bytes[446 + 4]
    );
    let start = u32::from_le_bytes(bytes[454..458].try_into()?) as u64 * 512;
    ensure!(start == image.volume_offset, "partition starts at {start}");
    let path = dir.join("partition.img");
    fs::write(&path, &bytes[start as usize..])?;
    Ok(path)
}

/// fsck.fat -n must be silent apart from its banner and summary.
fn fsck(volume: &Path) -> Result<()> {
    let volume = volume.to_str().context("utf-8 path")?;
    let output = run_tool("fsck.fat", "dosfstools", &["-n", volume])?;
    let lines: Vec<&str> = output.lines().collect();
    ensure!(
        lines.len() == 2 && lines[1].contains(" files, "),
        "fsck.fat complained:\n{output}"
    );
    Ok(())
}

/// Extracts everything with mcopy.
fn read_with_mtools(volume: &Path, dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let out = dir.join("mtools-out");
    fs::create_dir_all(&out)?;
    let volume = volume.to_str().context("utf-8 path")?;
    let target = format!("{}/", out.display());
    run_tool(
        "mcopy",
        "mtools",
        &["-s", "-n", "-i", volume, "::/", &target],
    )?;
    read_host_tree(&out)
}

/// Builds, then checks the image with fsck.fat, mtools and fatfs against `expected`.
fn check_image(
    image: &BuiltImage,
    work: &Path,
    expected: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    ensure!(image.clusters >= 65525, "only {} clusters", image.clusters);
    let volume = volume_file(image, work)?;
    fsck(&volume)?;
    let from_fatfs = read_with_fatfs(&volume)?;
    compare("fatfs", expected, &from_fatfs)?;
    let from_mtools = read_with_mtools(&volume, work)?;
    compare("mtools", expected, &from_mtools)
}

fn compare(
    reader: &str,
    expected: &BTreeMap<String, Vec<u8>>,
    actual: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    for (path, data) in expected {
        match actual.get(path) {
            None => bail!("{reader}: `{path}` missing from the image"),
            Some(read) if read != data => bail!(
                "{reader}: `{path}` differs ({} vs {} bytes)",
                read.len(),
                data.len()
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = actual.keys().find(|path| !expected.contains_key(*path)) {
        bail!("{reader}: unexpected `{extra}` in the image");
    }
    Ok(())
}

#[test]
fn nested_tree_of_2000_files_reads_back_everywhere() -> Result<()> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input");
    make_tree(&input, 2100)?;
    let expected = read_host_tree(&input)?;
    ensure!(
        expected.len() >= 2000,
        "only {} files generated",
        expected.len()
    );
    let image = ImageBuilder::new()
        .add_host(&input, "/")
        .label("vmharness")
        .build(&work.path().join("tree.img"))?;
    check_image(&image, work.path(), &expected)?;
    let label = run_tool(
        "mdir",
        "mtools",
        &["-i", image.path.to_str().context("utf-8")?, "::/"],
    )?;
    ensure!(
        label.contains("Volume in drive : is VMHARNESS"),
        "label missing:\n{label}"
    );
    Ok(())
}

#[test]
fn mbr_layout_with_mixed_entries() -> Result<()> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input");
    make_tree(&input, 40)?;
    let kernel = work.path().join("nimbos-aarch64.bin");
    fs::write(&kernel, pattern(7, 300_000))?;
    let image = ImageBuilder::new()
        .add_host(&kernel, "/")
        .add_host(&kernel, "/boot/Image")
        .add_host(&input, "/deep/er/tree")
        .add_bytes("/run.sh", b"echo hello from fat32\n".to_vec())
        .layout(Layout::Mbr)
        .size(DiskSize::Bytes(64 << 20))
        .build(&work.path().join("mbr.img"))?;
    ensure!(image.size_bytes == 64 << 20 && image.volume_offset == 1 << 20);
    let mut expected: BTreeMap<String, Vec<u8>> = read_host_tree(&input)?
        .into_iter()
        .map(|(path, data)| (format!("deep/er/tree/{path}"), data))
        .collect();
    expected.insert("nimbos-aarch64.bin".into(), fs::read(&kernel)?);
    expected.insert("boot/Image".into(), fs::read(&kernel)?);
    expected.insert("run.sh".into(), b"echo hello from fat32\n".to_vec());
    check_image(&image, work.path(), &expected)?;
    // The mtools offset syntax reads the partition in place, too.
    let listing = run_tool(
        "mdir",
        "mtools",
        &["-i", &format!("{}@@1M", image.path.display()), "::/boot"],
    )?;
    ensure!(listing.contains("Image"), "{listing}");
    Ok(())
}

#[test]
fn one_gib_image_uses_4k_clusters_and_stays_sparse() -> Result<()> {
    let work = tempfile::tempdir()?;
    let big = work.path().join("big.bin");
    let mut data = pattern(3, 3 << 20);
    data.extend(std::iter::repeat_n(0u8, 2 << 20)); // zero tail stays a hole
    fs::write(&big, &data)?;
    let image = ImageBuilder::new()
        .add_host(&big, "/big.bin")
        .size("1G".parse()?)
        .build(&work.path().join("1g.img"))?;
    ensure!(
        image.cluster_bytes == 4096,
        "cluster size {}",
        image.cluster_bytes
    );
    let meta = fs::metadata(&image.path)?;
    ensure!(meta.len() == 1 << 30);
    let allocated = meta.blocks() * 512;
    ensure!(
        allocated < (3 << 20) + (3 << 20) / 2,
        "allocated {allocated} bytes for 3 MiB of data"
    );
    check_image(
        &image,
        work.path(),
        &BTreeMap::from([("big.bin".to_string(), data)]),
    )
}

#[test]
fn same_inputs_give_identical_bytes() -> Result<()> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input");
    make_tree(&input, 200)?;
    let build = |name: &str| {
        ImageBuilder::new()
            .add_host(&input, "/x")
            .timestamp(1_700_000_000)
            .build(&work.path().join(name))
    };
    let (first, second) = (build("one.img")?, build("two.img")?);
    ensure!(
        fs::read(&first.path)? == fs::read(&second.path)?,
        "images differ"
    );
    ensure!(first.volume_id == second.volume_id);
    // The volume id follows the content, and can be overridden.
    fs::write(input.join("level0/changed.txt"), "new")?;
    let changed = build("three.img")?;
    ensure!(
        changed.volume_id != first.volume_id,
        "volume id ignores content"
    );
    let fixed = ImageBuilder::new()
        .add_host(&input, "/")
        .volume_id(0xCAFE_F00D)
        .build(&work.path().join("four.img"))?;
    let bytes = fs::read(&fixed.path)?;
    ensure!(
        bytes[67..71] == 0xCAFE_F00Du32.to_le_bytes(),
        "volume id override not written"
    );
    Ok(())
}

#[test]
fn timestamps_are_the_builders() -> Result<()> {
    let work = tempfile::tempdir()?;
    let build = |name: &str, epoch: Option<u64>| {
        let mut builder = ImageBuilder::new().add_bytes("/dir/run.sh", b"echo hi\n".to_vec());
        if let Some(epoch) = epoch {
            builder = builder.timestamp(epoch);
        }
        builder.build(&work.path().join(name))
    };
    for (epoch, shown) in [
        (None, "1980-01-01   0:00"),
        (Some(1_700_000_000), "2023-11-14  22:13"),
    ] {
        let image = build("dated.img", epoch)?;
        let listing = run_tool(
            "mdir",
            "mtools",
            &["-i", image.path.to_str().context("utf-8")?, "::/dir"],
        )?;
        ensure!(listing.contains(shown), "{epoch:?}: {listing}");
    }
    Ok(())
}
