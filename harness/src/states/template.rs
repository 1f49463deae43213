//! The `template` method's RAM file: whether a VM can have one, where it lives, and the cheap
//! check that it is still the file its state was saved with.
//!
//! Hashing the whole file on every restore would cost what the method saves (its data is tens
//! of MB), so `meta.toml` records its size, its change time (any write, truncation, hole punch
//! or `chmod` moves it) and a sha256 over its data extents' offsets and 64 blocks spread over
//! it.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsFd;
use std::path::Path;

use crate::digest::Sha256;
use nix::unistd::{lseek, Whence};
use serde::{Deserialize, Serialize};

use crate::qemu::{memory_bytes, ExtraArg, QemuSpec, QemuVersion, RamFile, RamMapping};

/// How many blocks the sample reads, and how big each is.
const SAMPLES: u64 = 64;
const SAMPLE_BYTES: usize = 4096;

/// The guest RAM size for a `template` state of `spec` on `version`, or why it cannot have one.
pub(crate) fn template_fits(spec: &QemuSpec, version: &QemuVersion) -> Result<u64, String> {
    if !version.at_least(8, 2) && !nix::unistd::geteuid().is_root() {
        // The file is kept read-only (0400) so no case can change it; only root opens that
        // read-write.
        return Err(format!(
            "QEMU {version} opens the template's read-only RAM file read-write, which only root may"
        ));
    }
    let bytes = memory_bytes(&spec.memory).ok_or_else(|| {
        format!(
            "`-m {}` is not a plain size the RAM file can take",
            spec.memory
        )
    })?;
    let own_backend = spec.extra.iter().any(|arg| match arg {
        ExtraArg::Word(word) => word == "-numa" || word.contains("memory-backend="),
        _ => false,
    });
    match own_backend {
        true => {
            Err("the config's arguments choose the guest's memory backend or NUMA nodes".into())
        }
        false => Ok(bytes),
    }
}

/// The RAM file `path` of `bytes`: shared while a state is saved into it, else a private
/// mapping of the read-only file.
pub(crate) fn ram_file(path: &Path, bytes: u64, saving: bool, version: &QemuVersion) -> RamFile {
    let mapping = match (saving, version.at_least(8, 2)) {
        (true, _) => RamMapping::Shared,
        (false, true) => RamMapping::PrivateReadOnlyFile,
        (false, false) => RamMapping::Private,
    };
    RamFile {
        path: path.to_path_buf(),
        bytes,
        mapping,
    }
}

/// What `meta.toml` records about a `template` state's RAM file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RamMeta {
    /// Its apparent size (the guest's RAM).
    pub bytes: u64,
    /// Bytes allocated on disk.
    pub allocated: u64,
    /// Its change time, `seconds.nanoseconds`.
    pub changed: String,
    /// sha256 of its data extents' offsets and sampled blocks.
    pub sample_sha256: String,
}

impl RamMeta {
    /// Reads what `path` is now.
    pub(crate) fn of(path: &Path) -> std::io::Result<RamMeta> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(RamMeta {
            bytes: meta.len(),
            allocated: meta.blocks() * 512,
            changed: format!("{}.{:09}", meta.ctime(), meta.ctime_nsec()),
            sample_sha256: sample(&file, meta.len())?,
        })
    }

    /// What differs between the recorded `self` and `found`, if anything.
    pub(crate) fn differs(&self, found: &RamMeta) -> Option<String> {
        if self.bytes != found.bytes {
            Some(format!("is {} bytes, saved as {}", found.bytes, self.bytes))
        } else if self.changed != found.changed {
            Some(format!(
                "was changed at {}, after the save ({})",
                found.changed, self.changed
            ))
        } else if self.sample_sha256 != found.sample_sha256 {
            Some("has other contents than were saved".into())
        } else {
            None
        }
    }
}

/// sha256 of the data extents' offsets and of [`SAMPLES`] blocks spread evenly over the file.
fn sample(file: &File, length: u64) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut offset: i64 = 0;
    let end = i64::try_from(length).unwrap_or(i64::MAX);
    while offset < end {
        let Ok(data) = lseek(file.as_fd(), offset, Whence::SeekData) else {
            break; // ENXIO: no data after `offset`.
        };
        let hole = lseek(file.as_fd(), data, Whence::SeekHole).map_err(std::io::Error::from)?;
        hasher.update(format!("{data}-{hole}\n").as_bytes());
        offset = hole;
    }
    let mut block = vec![0u8; SAMPLE_BYTES];
    let stride = (length / SAMPLES).max(SAMPLE_BYTES as u64);
    let mut at = 0;
    while at < length {
        let n = file.read_at(&mut block, at)?;
        hasher.update(&block[..n]);
        at = at.saturating_add(stride);
    }
    Ok(hasher.finish_hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn any_change_to_the_ram_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ram");
        let file = File::create(&path).unwrap();
        file.set_len(64 << 20).unwrap();
        file.write_at(b"guest", 5 << 20).unwrap();
        drop(file);
        let saved = RamMeta::of(&path).unwrap();
        assert_eq!(saved.differs(&RamMeta::of(&path).unwrap()), None);
        assert!(saved.allocated < 1 << 20, "sparse: {saved:?}");

        // A write, even of the same size, moves the change time.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_at(b"other", 40 << 20)
            .unwrap();
        let found = RamMeta::of(&path).unwrap();
        assert!(
            saved.differs(&found).unwrap().contains("changed"),
            "{found:?}"
        );
        // Another sample with the change time put back is still seen.
        let forged = RamMeta {
            changed: saved.changed.clone(),
            ..found
        };
        assert_eq!(
            saved.differs(&forged).as_deref(),
            Some("has other contents than were saved")
        );
        // So does a `chmod` (a state's files are made read-only once saved).
        let before = RamMeta::of(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let found = RamMeta::of(&path).unwrap();
        assert!(before.differs(&found).is_some(), "{found:?}");
    }

    #[test]
    fn only_a_plain_memory_size_without_a_backend_of_its_own_fits() {
        let v10 = QemuVersion::parse("QEMU emulator version 10.0.2").unwrap();
        let mut spec = QemuSpec::new("qemu", "virt", crate::arch::Accel::Tcg, "max", "512M");
        assert_eq!(template_fits(&spec, &v10), Ok(512 << 20));
        spec.memory = "1G,maxmem=2G".into();
        assert!(template_fits(&spec, &v10)
            .unwrap_err()
            .contains("plain size"));
        spec.memory = "1G".into();
        spec.extra = ExtraArg::parse_all(&["-numa".to_string(), "node".to_string()]);
        assert!(template_fits(&spec, &v10).unwrap_err().contains("NUMA"));
    }
}
