//! Unpacking hostile archives: nothing lands outside the target, and the size cap holds.

use std::io::Write;
use std::path::Path;

use vmharness_artifact::unpack::{unpack, UnpackError, UnpackLimits};
use vmharness_artifact::ArchiveFormat;

enum Item<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar.gz whose entry names are written raw, so hostile names survive.
fn tar_gz(items: &[Item]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (name, data, kind, link): (&str, &[u8], _, Option<&str>) = match item {
            Item::File(name, data) => (name, data, tar::EntryType::Regular, None),
            Item::Symlink(name, target) => (name, b"", tar::EntryType::Symlink, Some(target)),
            Item::Hardlink(name, target) => (name, b"", tar::EntryType::Link, Some(target)),
        };
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip(items: &[Item]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for item in items {
        match item {
            Item::File(name, data) => {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
            Item::Symlink(name, target) => writer.add_symlink(*name, *target, options).unwrap(),
            Item::Hardlink(..) => unreachable!("zip has no hard links"),
        }
    }
    writer.finish().unwrap().into_inner()
}

/// Unpacks `bytes` into `<tmp>/box/dest` and returns the result; `<tmp>` is returned for
/// checking that nothing appeared outside.
fn run(
    format: ArchiveFormat,
    bytes: &[u8],
    limit: u64,
) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    std::fs::write(&archive, bytes).unwrap();
    let dest = tmp.path().join("box/dest");
    let limits = UnpackLimits {
        max_total_bytes: limit,
    };
    let result = unpack(&archive, format, &dest, &limits).map(|_| ());
    (tmp, result)
}

/// Every path under `root`, except the archive and the target dir's contents.
fn outside(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "archive" || rel.starts_with("box/dest") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
            if rel != "box" {
                found.push(rel);
            }
        }
    }
    found
}

fn both(items: &[Item]) -> Vec<(ArchiveFormat, Vec<u8>)> {
    let mut out = vec![(ArchiveFormat::TarGz, tar_gz(items))];
    if !items.iter().any(|i| matches!(i, Item::Hardlink(..))) {
        out.push((ArchiveFormat::Zip, zip(items)));
    }
    out
}

#[test]
fn parent_dir_entries_are_rejected() {
    for (format, bytes) in both(&[Item::File("ok.txt", b"ok"), Item::File("../x", b"evil")]) {
        let (tmp, result) = run(format, &bytes, 1 << 20);
        match result {
            Err(UnpackError::UnsafePath { entry, .. }) => assert_eq!(entry, "../x"),
            other => panic!("{format:?}: expected UnsafePath, got {other:?}"),
        }
        assert!(
            outside(tmp.path()).is_empty(),
            "{format:?}: {:?}",
            outside(tmp.path())
        );
    }
}

#[test]
fn absolute_entries_are_rejected() {
    let tmp_target = tempfile::tempdir().unwrap();
    let absolute = tmp_target.path().join("abs.txt");
    let name = absolute.to_string_lossy().into_owned();
    for (format, bytes) in both(&[Item::File(&name, b"evil")]) {
        let (_tmp, result) = run(format, &bytes, 1 << 20);
        assert!(
            matches!(result, Err(UnpackError::UnsafePath { ref entry, .. }) if *entry == name),
            "{format:?}: {result:?}"
        );
        assert!(!absolute.exists());
    }
}

#[test]
fn symlinks_pointing_out_are_rejected_and_not_written_through() {
    let cases: Vec<Vec<Item>> = vec![
        vec![Item::Symlink("up", "../../outside")],
        vec![Item::Symlink("abs", "/etc/passwd")],
        // A chain that looks inside at each step but leads out when followed.
        vec![
            Item::Symlink("a/b", ".."),
            Item::Symlink("s", "a/b"),
            Item::Symlink("l", "s/.."),
        ],
        // A link followed by a file written "through" it.
        vec![Item::Symlink("dir", ".."), Item::File("dir/x", b"evil")],
    ];
    for items in &cases {
        for (format, bytes) in both(items) {
            let (tmp, result) = run(format, &bytes, 1 << 20);
            assert!(
                matches!(
                    result,
                    Err(UnpackError::LinkEscapes { .. }
                        | UnpackError::ThroughLink { .. }
                        | UnpackError::Conflict { .. })
                ),
                "{format:?}: {result:?}"
            );
            assert!(
                outside(tmp.path()).is_empty(),
                "{format:?}: {:?}",
                outside(tmp.path())
            );
        }
    }
}

#[test]
fn hardlinks_pointing_out_are_rejected() {
    let (tmp, result) = run(
        ArchiveFormat::TarGz,
        &tar_gz(&[Item::Hardlink("h", "../../etc/passwd")]),
        1 << 20,
    );
    assert!(
        matches!(result, Err(UnpackError::LinkEscapes { ref entry, .. }) if entry == "h"),
        "{result:?}"
    );
    assert!(outside(tmp.path()).is_empty());
}

#[test]
fn inside_links_and_nested_files_unpack() {
    let items = [
        Item::File("./boot/vmlinuz", b"KERNEL"),
        Item::Symlink("boot/current", "vmlinuz"),
        Item::Symlink("top", "boot/../boot/vmlinuz"),
    ];
    for (format, bytes) in both(&items) {
        let (tmp, result) = run(format, &bytes, 1 << 20);
        result.unwrap();
        let dest = tmp.path().join("box/dest");
        assert_eq!(std::fs::read(dest.join("boot/vmlinuz")).unwrap(), b"KERNEL");
        assert_eq!(std::fs::read(dest.join("boot/current")).unwrap(), b"KERNEL");
        assert_eq!(std::fs::read(dest.join("top")).unwrap(), b"KERNEL");
    }
    let (tmp, result) = run(
        ArchiveFormat::TarGz,
        &tar_gz(&[Item::File("a", b"A"), Item::Hardlink("b", "a")]),
        1 << 20,
    );
    result.unwrap();
    assert_eq!(std::fs::read(tmp.path().join("box/dest/b")).unwrap(), b"A");
}

#[test]
fn size_cap_is_enforced_on_actual_bytes() {
    let big = vec![0u8; 300_000];
    for (format, bytes) in both(&[Item::File("small", b"hi"), Item::File("big", &big)]) {
        let (_tmp, result) = run(format, &bytes, 100_000);
        match result {
            Err(UnpackError::SizeCap { entry, limit }) => {
                assert_eq!((entry.as_str(), limit), ("big", 100_000))
            }
            other => panic!("{format:?}: expected SizeCap, got {other:?}"),
        }
        let (_tmp, result) = run(format, &bytes, 400_000);
        result.unwrap();
    }
}

#[test]
fn tar_xz_unpacks_and_garbage_is_corrupt() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "fw.bin", &b"FW!"[..]).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&tar.into_inner().unwrap()).unwrap();
    let (tmp, result) = run(ArchiveFormat::TarXz, &xz.finish().unwrap(), 1 << 20);
    result.unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("box/dest/fw.bin")).unwrap(),
        b"FW!"
    );
    for format in [
        ArchiveFormat::Zip,
        ArchiveFormat::TarGz,
        ArchiveFormat::TarXz,
    ] {
        let (_tmp, result) = run(format, b"definitely not an archive", 1 << 20);
        assert!(
            matches!(result, Err(UnpackError::Corrupt { .. })),
            "{format:?}: {result:?}"
        );
    }
}
