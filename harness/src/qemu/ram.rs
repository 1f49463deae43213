//! Guest RAM in a host file: `-object memory-backend-file` made the machine's memory backend,
//! so a saved state's RAM can be a file every restore maps instead of a stream it loads.

use std::path::PathBuf;

use super::argv::Argv;

/// The memory backend's object id.
const RAM_ID: &str = "vmh-ram";

/// How QEMU maps a [`RamFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamMapping {
    /// `share=on`: the guest's writes land in the file (the boot a state is saved from).
    Shared,
    /// `share=off`: a private copy-on-write mapping; the guest's writes never reach the file.
    /// QEMU before 8.2 still opens the file read-write (its `readonly=on` makes guest RAM a
    /// ROM), so the file must be writable by QEMU's user.
    Private,
    /// `share=off,readonly=on,rom=off` (QEMU 8.2): as [`RamMapping::Private`], with the file
    /// opened read-only.
    PrivateReadOnlyFile,
}

/// Guest RAM backed by a host file of `bytes` (the size `-m` gives the guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamFile {
    /// The file (QEMU creates it, sparse, if it does not exist).
    pub path: PathBuf,
    /// The guest's RAM size in bytes.
    pub bytes: u64,
    /// How it is mapped.
    pub mapping: RamMapping,
}

impl RamFile {
    /// Appends `-object memory-backend-file,... -machine memory-backend=vmh-ram`.
    pub(crate) fn push_args(&self, argv: &mut Argv) {
        let share = match self.mapping {
            RamMapping::Shared => "on",
            RamMapping::Private => "off",
            RamMapping::PrivateReadOnlyFile => "off,readonly=on,rom=off",
        };
        let path = self.path.to_string_lossy().replace(',', ",,");
        argv.arg("-object").arg(format!(
            "memory-backend-file,id={RAM_ID},size={},mem-path={path},share={share}",
            self.bytes
        ));
        argv.arg("-machine").arg(format!("memory-backend={RAM_ID}"));
    }
}

/// The bytes of a `-m` value that is a plain size (`512`, `512M`, `1G`, `size=2G`; a bare
/// number is MiB, as QEMU reads it); `None` for anything else (`slots=`, `maxmem=`, fractions).
pub(crate) fn memory_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix("size=").unwrap_or(text);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "" | "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_read_as_qemu_reads_them() {
        for (text, bytes) in [
            ("512", Some(512 << 20)),
            ("512M", Some(512 << 20)),
            ("256m", Some(256 << 20)),
            ("2G", Some(2 << 30)),
            ("size=1G", Some(1 << 30)),
            ("65536K", Some(64 << 20)),
            ("1.5G", None),
            ("1G,slots=2,maxmem=4G", None),
            ("", None),
            ("99999999999999T", None),
        ] {
            assert_eq!(memory_bytes(text), bytes, "{text}");
        }
    }
}
