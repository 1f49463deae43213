//! What can go wrong while building an image, each error with its cause.

use std::path::PathBuf;

use crate::options::Layout;

/// Errors from building an image. Entry numbers in messages are 1-based, in the order the
/// entries were added.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A size string could not be parsed.
    #[error("invalid disk size `{text}`: {reason}")]
    InvalidSize {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The volume label cannot be stored.
    #[error("invalid volume label `{label}`: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A destination path contains `..`.
    #[error("destination `{dest}` contains `..`; destinations cannot leave the image root")]
    PathEscapesRoot {
        /// The destination as given.
        dest: String,
    },
    /// A destination cannot be used for this kind of entry.
    #[error("invalid destination `{dest}`: {reason}")]
    InvalidDest {
        /// The destination as given.
        dest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file or directory name cannot be stored in FAT.
    #[error("`{path}`: FAT cannot hold the name `{name}`: {reason}")]
    InvalidName {
        /// Image path (or destination) the name appears in.
        path: String,
        /// The offending name.
        name: String,
        /// Why FAT cannot hold it.
        reason: &'static str,
    },
    /// Two entries put something at the same image path (FAT compares names case-insensitively).
    #[error("duplicate destination `{path}`: entry {} and entry {} both put something there (FAT names are case-insensitive)", first + 1, second + 1)]
    DuplicateDest {
        /// The image path.
        path: String,
        /// Index of the entry that got there first.
        first: usize,
        /// Index of the entry that collided.
        second: usize,
    },
    /// A source file or directory cannot be read (missing, permissions, ...).
    #[error("cannot read source `{}`: {source}", path.display())]
    Source {
        /// Host path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A source file's size changed between planning and copying.
    #[error("source `{}` changed while the image was built (expected {expected} bytes)", path.display())]
    SourceChanged {
        /// Host path.
        path: PathBuf,
        /// Size seen when planning.
        expected: u64,
    },
    /// A source is neither a regular file nor a directory.
    #[error("source `{}` is not a regular file or directory", path.display())]
    UnsupportedFileType {
        /// Host path.
        path: PathBuf,
    },
    /// A directory source contains a symlink to one of its ancestors.
    #[error("source `{}` is a symlink loop", path.display())]
    SymlinkLoop {
        /// Host path of the looping link.
        path: PathBuf,
    },
    /// A file exceeds FAT32's 4 GiB - 1 limit.
    #[error("`{path}` is {size} bytes; FAT32 files are at most 4294967295 bytes")]
    FileTooLarge {
        /// Image path.
        path: String,
        /// File size.
        size: u64,
    },
    /// A directory has more entries than FAT allows (65536, counting long-name entries).
    #[error("directory `{path}` needs {entries} entries; FAT allows 65536")]
    DirectoryTooLarge {
        /// Image path.
        path: String,
        /// Entries needed.
        entries: u64,
    },
    /// The content does not fit in the requested size.
    #[error("content needs {needed} bytes of clusters but a {size}-byte image has {available}; use size \"auto\" or at least {fitting} bytes ({} MiB)", fitting.div_ceil(1 << 20))]
    ContentTooLarge {
        /// Bytes of clusters the content needs.
        needed: u64,
        /// Bytes of clusters the image has.
        available: u64,
        /// Requested image size.
        size: u64,
        /// Smallest image size that fits the content.
        fitting: u64,
    },
    /// The requested size is below the FAT32 minimum (65525 clusters).
    #[error("a {requested}-byte image is too small for FAT32 with layout `{layout}`; it needs at least {minimum} bytes ({} MiB)", minimum >> 20)]
    BelowMinimum {
        /// Requested image size.
        requested: u64,
        /// Smallest valid image size.
        minimum: u64,
        /// Partition layout.
        layout: Layout,
    },
    /// The requested size (or the content) exceeds what FAT32 can address.
    #[error("a {requested}-byte image exceeds the FAT32 maximum of {maximum} bytes")]
    AboveMaximum {
        /// Requested (or needed) image size.
        requested: u64,
        /// Largest valid image size.
        maximum: u64,
    },
    /// Creating, sizing or renaming the output image failed.
    #[error("cannot create image `{}`: {source}", path.display())]
    Output {
        /// Output (or temporary) path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the image's contents failed part way (a full disk, most often).
    #[error("write failed: image `{}`: {source}{}", path.display(), space_hint(source))]
    Write {
        /// The image being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A hint for a write error that means the file system (or a limit) is full: ` (disk full?)`.
fn space_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => " (disk full?)",
        std::io::ErrorKind::FileTooLarge => " (file size limit?)",
        _ => "",
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn full_disks_and_file_size_limits_get_a_hint() {
        // Linux errno values: ENOSPC, EDQUOT, EFBIG, EIO.
        let hint = |errno| space_hint(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(hint(28), " (disk full?)");
        assert_eq!(hint(122), " (disk full?)");
        assert_eq!(hint(27), " (file size limit?)");
        assert_eq!(hint(5), "");
    }
}
