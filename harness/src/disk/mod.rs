//! FAT32 disk images for VMs: the `[disk]` section of a config ([`DiskSpec`]) and the image
//! writer behind it.
//!
//! The writer is the workspace crate `fat32-image` (rootless, sparse and reproducible; see its
//! README), re-exported here so `vmharness::disk::ImageBuilder` keeps working. This module adds
//! what only a VM config has: entries whose `source` is a [`FileRef`](crate::fileref::FileRef)
//! mapped to a host path by a resolver, how QEMU attaches the image ([`Attach`]), and the
//! errors that name a config entry ([`DiskError`]). Timestamps come from the builder: the
//! settings pass `SOURCE_DATE_EPOCH` to [`ImageBuilder::timestamp`].

mod spec;

pub use fat32_image::{BuiltImage, DiskSize, Entry, ImageBuilder, ImageError, Layout};
pub use spec::{Attach, DiskSpec, EntrySpec, ResolveFailure};

/// Errors from building the image a [`DiskSpec`] describes. Entry numbers are 1-based, in
/// config order.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A config entry is malformed.
    #[error("disk entry {} (dest `{dest}`): {reason}", entry + 1)]
    InvalidEntry {
        /// Entry index.
        entry: usize,
        /// Its destination.
        dest: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The resolver could not map an entry's `source` to a host path.
    #[error("disk entry {} (dest `{dest}`): cannot resolve source `{source_ref}`", entry + 1)]
    Resolve {
        /// Entry index.
        entry: usize,
        /// Its destination.
        dest: String,
        /// The `source` reference.
        source_ref: String,
        /// Why the resolver failed.
        #[source]
        source: ResolveFailure,
    },
    /// The image itself cannot be built or written (its message is the writer's).
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// A hint for a write error that means the file system (or a limit) is full: ` (disk full?)`.
pub(crate) fn space_hint(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT) => " (disk full?)",
        Some(nix::libc::EFBIG) => " (file size limit?)",
        _ => "",
    }
}
