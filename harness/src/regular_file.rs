//! Files vmharness reads itself (configs, symbol ELFs) and files QEMU reads whole (kernel,
//! firmware, images) must be regular files: a FIFO blocks an `open` or a read forever, a
//! character device like `/dev/zero` never ends, a directory is no image. Everything else is
//! refused by what it is, before anything blocks.

use std::fmt;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a path is when it is not a regular file (symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device (`/dev/zero`, a tty).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else that is not a regular file.
    Other,
}

impl FileKind {
    /// What `metadata` (taken following symlinks) describes, `None` for a regular file.
    pub fn of(metadata: &Metadata) -> Option<FileKind> {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            return None;
        }
        Some(if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_fifo() {
            FileKind::Fifo
        } else if file_type.is_socket() {
            FileKind::Socket
        } else if file_type.is_char_device() {
            FileKind::CharDevice
        } else if file_type.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "a special file",
        })
    }
}

/// Why a path could not be opened as a regular file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// It exists but is something else.
    #[error("{0}, not a regular file")]
    NotRegular(FileKind),
    /// It could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The metadata of `path` (symlinks followed) if it is a regular file.
pub(crate) fn regular_metadata(path: &Path) -> Result<Metadata, OpenError> {
    let metadata = std::fs::metadata(path)?;
    match FileKind::of(&metadata) {
        None => Ok(metadata),
        Some(kind) => Err(OpenError::NotRegular(kind)),
    }
}

/// Opens `path` for reading if it is a regular file, never blocking: the path is checked
/// first (a socket cannot be opened at all), then opened with `O_NONBLOCK` (a FIFO swapped in
/// meanwhile does not wait for a writer) and the open file is checked again.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    regular_metadata(path)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let metadata = file.metadata()?;
    match FileKind::of(&metadata) {
        None => Ok((file, metadata)),
        Some(kind) => Err(OpenError::NotRegular(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_kind_is_named_and_a_regular_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let to_fifo = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        for (path, kind) in [
            (dir.path(), FileKind::Directory),
            (fifo.as_path(), FileKind::Fifo),
            (to_fifo.as_path(), FileKind::Fifo),
            (socket.as_path(), FileKind::Socket),
            (Path::new("/dev/zero"), FileKind::CharDevice),
        ] {
            let err = open_regular(path).unwrap_err();
            assert!(
                matches!(err, OpenError::NotRegular(found) if found == kind),
                "{}: {err}",
                path.display()
            );
        }
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(open_regular(&link).unwrap().1.len(), 1);
        assert!(matches!(
            open_regular(&dir.path().join("missing")),
            Err(OpenError::Io(_))
        ));
    }
}
