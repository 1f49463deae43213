//! The directory tree an image will hold, built from entries and validated before anything is
//! written: safe destination paths, FAT-storable names, no duplicates, readable sources.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ImageError;
use crate::names::validate_long_name;

/// One thing to put on the image.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A host file (copied to `dest`; a `dest` ending in `/` keeps the file's name) or a host
    /// directory (its contents copied recursively into directory `dest`).
    Host {
        /// Path on the host.
        host: PathBuf,
        /// Path in the image, `/`-separated.
        dest: String,
    },
    /// Bytes given directly, written to file `dest`.
    Inline {
        /// File content.
        data: Arc<[u8]>,
        /// Path in the image, `/`-separated.
        dest: String,
    },
}

/// Largest file FAT32 can hold.
const MAX_FILE_BYTES: u64 = u32::MAX as u64;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A host file, read while the image is written.
    Host(PathBuf),
    /// Bytes given inline.
    Inline(Arc<[u8]>),
}

/// A file in the tree.
#[derive(Debug, Clone)]
pub(crate) struct FileNode {
    pub content: Content,
    pub size: u64,
}

/// A node: directory or file.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Dir(DirNode),
    File(FileNode),
}

/// A named child of a directory, with the entry that put it there.
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub name: String,
    pub node: Node,
    entry: usize,
}

/// A directory: children in insertion order, indexed case-insensitively like FAT compares.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirNode {
    pub children: Vec<Child>,
    by_key: HashMap<String, usize>,
}

/// Joins an image directory path and a child name for messages.
fn join(parent: &str, name: &str) -> String {
    format!("{}/{name}", parent.trim_end_matches('/'))
}

impl DirNode {
    /// The child directory `name`, created if missing; an existing file there is an error.
    fn subdir(&mut self, name: &str, path: &str, entry: usize) -> Result<&mut DirNode, ImageError> {
        let key = name.to_uppercase();
        let index = match self.by_key.get(&key) {
            Some(&index) => index,
            None => {
                self.by_key.insert(key, self.children.len());
                self.children.push(Child {
                    name: name.to_string(),
                    node: Node::Dir(DirNode::default()),
                    entry,
                });
                self.children.len() - 1
            }
        };
        match &mut self.children[index] {
            Child {
                node: Node::Dir(dir),
                ..
            } => Ok(dir),
            Child { entry: first, .. } => Err(ImageError::DuplicateDest {
                path: path.to_string(),
                first: *first,
                second: entry,
            }),
        }
    }

    /// Adds file `name`; any existing child with the same (case-insensitive) name is an error.
    fn add_file(
        &mut self,
        name: &str,
        file: FileNode,
        path: &str,
        entry: usize,
    ) -> Result<(), ImageError> {
        let key = name.to_uppercase();
        if let Some(&index) = self.by_key.get(&key) {
            return Err(ImageError::DuplicateDest {
                path: path.to_string(),
                first: self.children[index].entry,
                second: entry,
            });
        }
        if file.size > MAX_FILE_BYTES {
            return Err(ImageError::FileTooLarge {
                path: path.to_string(),
                size: file.size,
            });
        }
        self.by_key.insert(key, self.children.len());
        self.children.push(Child {
            name: name.to_string(),
            node: Node::File(file),
            entry,
        });
        Ok(())
    }
}

/// Splits an image destination into validated components; `..` is an error, `.` and empty
/// components are ignored, so `/a//b/./c` is `a/b/c`.
fn dest_components(dest: &str) -> Result<Vec<&str>, ImageError> {
    let mut components = Vec::new();
    for component in dest.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(ImageError::PathEscapesRoot {
                    dest: dest.to_string(),
                })
            }
            name => {
                validate_long_name(name).map_err(|reason| ImageError::InvalidName {
                    path: dest.to_string(),
                    name: name.to_string(),
                    reason,
                })?;
                components.push(name);
            }
        }
    }
    Ok(components)
}

/// Reads a host path's metadata, following symlinks; a missing file names the entry's path.
fn host_metadata(path: &Path) -> Result<fs::Metadata, ImageError> {
    fs::metadata(path).map_err(|source| ImageError::Source {
        path: path.to_path_buf(),
        source,
    })
}

/// The root of the image's tree.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub root: DirNode,
}

impl Tree {
    /// Adds entry number `index` (for messages) to the tree.
    pub fn add(&mut self, index: usize, entry: &Entry) -> Result<(), ImageError> {
        match entry {
            Entry::Inline { data, dest } => {
                let file = FileNode {
                    size: data.len() as u64,
                    content: Content::Inline(data.clone()),
                };
                self.add_file_at(dest, None, file, index)
            }
            Entry::Host { host, dest } => {
                let meta = host_metadata(host)?;
                if meta.is_dir() {
                    let components = dest_components(dest)?;
                    let mut dir = &mut self.root;
                    let mut path = String::from("/");
                    for name in components {
                        path = join(&path, name);
                        dir = dir.subdir(name, &path, index)?;
                    }
                    let mut ancestors = vec![(meta.dev(), meta.ino())];
                    add_host_dir(dir, host, &path, index, &mut ancestors)
                } else if meta.is_file() {
                    let file = FileNode {
                        size: meta.len(),
                        content: Content::Host(host.clone()),
                    };
                    self.add_file_at(dest, host.file_name().and_then(|n| n.to_str()), file, index)
                } else {
                    Err(ImageError::UnsupportedFileType { path: host.clone() })
                }
            }
        }
    }

    /// Adds a file at `dest`; a destination that names a directory (`/` or ending in `/`)
    /// takes `default_name` (the host file's name) as the file name.
    fn add_file_at(
        &mut self,
        dest: &str,
        default_name: Option<&str>,
        file: FileNode,
        index: usize,
    ) -> Result<(), ImageError> {
        let mut components = dest_components(dest)?;
        let names_dir = dest.ends_with('/') || dest.ends_with("/.") || components.is_empty();
        let owned_default;
        if names_dir {
            let default = default_name.ok_or_else(|| ImageError::InvalidDest {
                dest: dest.to_string(),
                reason: "names a directory, not a file path",
            })?;
            validate_long_name(default).map_err(|reason| ImageError::InvalidName {
                path: dest.to_string(),
                name: default.to_string(),
                reason,
            })?;
            owned_default = default.to_string();
            components.push(&owned_default);
        }
        let Some((file_name, parents)) = components.split_last() else {
            return Err(ImageError::InvalidDest {
                dest: dest.to_string(),
                reason: "names a directory, not a file path",
            });
        };
        let mut dir = &mut self.root;
        let mut path = String::from("/");
        for name in parents {
            path = join(&path, name);
            dir = dir.subdir(name, &path, index)?;
        }
        dir.add_file(file_name, file, &join(&path, file_name), index)
    }
}

/// Copies host directory `host` into `dir` recursively, in sorted name order so the image does
/// not depend on the host's directory order. `ancestors` guards against symlink loops.
fn add_host_dir(
    dir: &mut DirNode,
    host: &Path,
    image_path: &str,
    index: usize,
    ancestors: &mut Vec<(u64, u64)>,
) -> Result<(), ImageError> {
    let read_error = |source| ImageError::Source {
        path: host.to_path_buf(),
        source,
    };
    let mut children = fs::read_dir(host)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    children.sort_by_key(|child| child.file_name());
    for child in children {
        let host_child = child.path();
        let name = child.file_name();
        let name = name.to_str().ok_or_else(|| ImageError::InvalidName {
            path: image_path.to_string(),
            name: name.to_string_lossy().into_owned(),
            reason: "host file name is not valid UTF-8",
        })?;
        let child_path = join(image_path, name);
        validate_long_name(name).map_err(|reason| ImageError::InvalidName {
            path: child_path.clone(),
            name: name.to_string(),
            reason,
        })?;
        let file_type = child.file_type().map_err(|source| ImageError::Source {
            path: host_child.clone(),
            source,
        })?;
        let meta = if file_type.is_symlink() {
            host_metadata(&host_child)?
        } else {
            child.metadata().map_err(|source| ImageError::Source {
                path: host_child.clone(),
                source,
            })?
        };
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                return Err(ImageError::SymlinkLoop { path: host_child });
            }
            ancestors.push(id);
            let sub = dir.subdir(name, &child_path, index)?;
            add_host_dir(sub, &host_child, &child_path, index, ancestors)?;
            ancestors.pop();
        } else if meta.is_file() {
            let file = FileNode {
                size: meta.len(),
                content: Content::Host(host_child),
            };
            dir.add_file(name, file, &child_path, index)?;
        } else {
            return Err(ImageError::UnsupportedFileType { path: host_child });
        }
    }
    Ok(())
}
