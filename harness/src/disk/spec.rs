//! The `[disk]` section of a VM config and how QEMU attaches the built image.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

use crate::fileref::FileRef;

use super::{BuiltImage, DiskError, DiskSize, Entry, ImageBuilder, Layout};

/// Why a resolver could not map an entry's `source` to a host path.
pub type ResolveFailure = Box<dyn std::error::Error + Send + Sync>;

/// How QEMU presents the image to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Attach {
    /// `virtio-blk-pci` (x86_64, aarch64/riscv64 `virt` with PCI).
    #[default]
    VirtioBlkPci,
    /// `virtio-blk-device` on virtio-mmio.
    VirtioBlkDevice,
    /// Any other `-device` driver, with optional properties (`usb-storage`, `ide-hd,bus=ide.0`).
    Device(String),
}

impl Attach {
    /// The `-device` driver string (without the `drive=` property).
    pub fn driver(&self) -> &str {
        match self {
            Attach::VirtioBlkPci => "virtio-blk-pci",
            Attach::VirtioBlkDevice => "virtio-blk-device",
            Attach::Device(driver) => driver,
        }
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.driver())
    }
}

impl<'de> Deserialize<'de> for Attach {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let driver = String::deserialize(deserializer)?;
        match driver.trim() {
            "" => Err(D::Error::custom(
                "attach: expected a QEMU -device driver name",
            )),
            "virtio-blk-pci" => Ok(Attach::VirtioBlkPci),
            "virtio-blk-device" => Ok(Attach::VirtioBlkDevice),
            other if other.contains(char::is_whitespace) => Err(D::Error::custom(format!(
                "attach: `{other}` contains whitespace"
            ))),
            other => Ok(Attach::Device(other.to_string())),
        }
    }
}

/// One `[[disk.entries]]` item: `dest` plus exactly one of `source` or `text`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// Path in the image.
    pub dest: String,
    /// Host file or directory: `artifact:<name>/<file>`, `env:VAR` or a path relative to
    /// the config.
    #[serde(default)]
    pub source: Option<FileRef>,
    /// Inline file content.
    #[serde(default)]
    pub text: Option<String>,
}

/// The `[disk]` section of a VM config (or a standalone disk manifest).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Image size (default `auto`).
    #[serde(default)]
    pub size: DiskSize,
    /// Volume label.
    #[serde(default)]
    pub label: Option<String>,
    /// Partition layout (default `none`).
    #[serde(default)]
    pub layout: Layout,
    /// QEMU device the image is attached with (default `virtio-blk-pci`).
    #[serde(default)]
    pub attach: Attach,
    /// Volume id override (default: derived from the content).
    #[serde(default)]
    pub volume_id: Option<u32>,
    /// What goes on the disk.
    #[serde(default)]
    pub entries: Vec<EntrySpec>,
}

impl DiskSpec {
    /// An [`ImageBuilder`] for this spec; `resolve` maps each `source` string to a host path.
    pub fn builder(
        &self,
        resolve: &dyn Fn(&FileRef) -> Result<PathBuf, ResolveFailure>,
    ) -> Result<ImageBuilder, DiskError> {
        let mut builder = ImageBuilder::new().size(self.size).layout(self.layout);
        if let Some(label) = &self.label {
            builder = builder.label(label.clone());
        }
        if let Some(volume_id) = self.volume_id {
            builder = builder.volume_id(volume_id);
        }
        for (index, spec) in self.entries.iter().enumerate() {
            let entry = match (&spec.source, &spec.text) {
                (Some(source), None) => Entry::Host {
                    host: resolve(source).map_err(|failure| DiskError::Resolve {
                        entry: index,
                        dest: spec.dest.clone(),
                        source_ref: source.to_string(),
                        source: failure,
                    })?,
                    dest: spec.dest.clone(),
                },
                (None, Some(text)) => Entry::Inline {
                    data: text.as_bytes().into(),
                    dest: spec.dest.clone(),
                },
                (Some(_), Some(_)) | (None, None) => {
                    return Err(DiskError::InvalidEntry {
                        entry: index,
                        dest: spec.dest.clone(),
                        reason: "needs exactly one of `source` or `text`",
                    })
                }
            };
            builder = builder.entry(entry);
        }
        Ok(builder)
    }

    /// Resolves the entries and writes the image to `out`.
    pub fn build(
        &self,
        resolve: &dyn Fn(&FileRef) -> Result<PathBuf, ResolveFailure>,
        out: &Path,
    ) -> Result<BuiltImage, DiskError> {
        Ok(self.builder(resolve)?.build(out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "artifacts")] // it names `artifact:` references
    fn spec_parses_the_documented_form() {
        let spec: DiskSpec = toml::from_str(
            r#"
            size = "64M"
            label = "VMHARNESS"
            layout = "mbr"
            attach = "virtio-blk-device"
            [[entries]]
            source = "artifact:nimbos-aarch64/nimbos-aarch64.bin"
            dest = "/nimbos-aarch64.bin"
            [[entries]]
            dest = "/run.sh"
            text = "echo hello\n"
            "#,
        )
        .expect("documented form parses");
        assert_eq!(spec.size, DiskSize::Bytes(64 << 20));
        assert_eq!(spec.layout, Layout::Mbr);
        assert_eq!(spec.attach, Attach::VirtioBlkDevice);
        assert_eq!(spec.entries.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(toml::from_str::<DiskSpec>("sise = \"64M\"").is_err());
        assert!(toml::from_str::<DiskSpec>("layout = \"gpt\"").is_err());
        assert!(toml::from_str::<DiskSpec>("size = \"64Q\"").is_err());
        assert!(toml::from_str::<DiskSpec>("[[entries]]\ndest = \"/a\"\nsorce = \"x\"").is_err());
        let custom: DiskSpec =
            toml::from_str("attach = \"usb-storage,removable=on\"").expect("parses");
        assert_eq!(
            custom.attach,
            Attach::Device("usb-storage,removable=on".into())
        );
    }
}
