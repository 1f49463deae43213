//! Image options that users spell in configs and on the command line: size and layout
//! (with the `serde` feature, both deserialize from the same strings).

use std::fmt;
use std::str::FromStr;

use crate::error::ImageError;

/// Size of the whole image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskSize {
    /// Content plus headroom, rounded up to a whole MiB and at least the FAT32 minimum.
    #[default]
    Auto,
    /// Exactly this many bytes (a multiple of 512).
    Bytes(u64),
}

impl FromStr for DiskSize {
    type Err = ImageError;

    /// Parses `auto`, a byte count, or a number with a binary unit: `K`/`KiB`, `M`/`MiB`,
    /// `G`/`GiB`, `T`/`TiB` (so `64M` is 64 MiB, as with `truncate` and `qemu-img`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ImageError::InvalidSize {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("auto") {
            return Ok(DiskSize::Auto);
        }
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        let number: u64 = number
            .parse()
            .map_err(|_| invalid("expected `auto` or a whole number with an optional unit"))?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "K" | "KiB" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            "T" | "TiB" => 40,
            _ => {
                return Err(invalid(
                    "unknown unit; use K, M, G, T (or KiB, MiB, GiB, TiB)",
                ))
            }
        };
        let bytes = number
            .checked_mul(1u64 << shift)
            .ok_or_else(|| invalid("too large"))?;
        DiskSize::from_bytes(bytes).map_err(|_| invalid("not a multiple of 512 bytes"))
    }
}

impl DiskSize {
    /// A fixed size in bytes; it must be a multiple of 512.
    pub fn from_bytes(bytes: u64) -> Result<DiskSize, ImageError> {
        if !bytes.is_multiple_of(512) {
            return Err(ImageError::InvalidSize {
                text: bytes.to_string(),
                reason: "not a multiple of 512 bytes".to_string(),
            });
        }
        Ok(DiskSize::Bytes(bytes))
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskSize::Auto => f.write_str("auto"),
            DiskSize::Bytes(bytes) if bytes % (1 << 20) == 0 => write!(f, "{}M", bytes >> 20),
            DiskSize::Bytes(bytes) => write!(f, "{bytes}"),
        }
    }
}

/// `"auto"`, a size string like `"64M"` (see [`FromStr`]) or a byte count.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for DiskSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};

        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = DiskSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"auto\", a size like \"64M\", or a byte count")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DiskSize, E> {
                text.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<DiskSize, E> {
                DiskSize::from_bytes(bytes).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<DiskSize, E> {
                let bytes =
                    u64::try_from(bytes).map_err(|_| E::custom("size cannot be negative"))?;
                self.visit_u64(bytes)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Partitioning of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Layout {
    /// The whole image is the FAT32 volume ("superfloppy").
    #[default]
    None,
    /// An MBR with one FAT32 LBA partition (type 0x0C) starting at 1 MiB.
    Mbr,
}

impl Layout {
    /// Byte offset of the FAT32 volume inside the image.
    pub fn volume_offset(self) -> u64 {
        match self {
            Layout::None => 0,
            Layout::Mbr => 1 << 20,
        }
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Layout::None),
            "mbr" => Ok(Layout::Mbr),
            other => Err(format!(
                "unknown layout `{other}`; expected `none` or `mbr`"
            )),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::None => "none",
            Layout::Mbr => "mbr",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("auto".parse::<DiskSize>().ok(), Some(DiskSize::Auto));
        assert_eq!(
            "64M".parse::<DiskSize>().ok(),
            Some(DiskSize::Bytes(64 << 20))
        );
        assert_eq!(
            "1GiB".parse::<DiskSize>().ok(),
            Some(DiskSize::Bytes(1 << 30))
        );
        assert_eq!("4096".parse::<DiskSize>().ok(), Some(DiskSize::Bytes(4096)));
        for bad in ["", "64X", "M", "1000", "-1M", "99999999999999999999T"] {
            assert!(bad.parse::<DiskSize>().is_err(), "{bad:?}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn sizes_and_layouts_deserialize_from_the_same_strings() {
        use serde::de::value::{Error, StrDeserializer, U64Deserializer};
        use serde::Deserialize;

        let size = |text| DiskSize::deserialize(StrDeserializer::<Error>::new(text));
        assert_eq!(size("64M").ok(), Some(DiskSize::Bytes(64 << 20)));
        assert_eq!(size("auto").ok(), Some(DiskSize::Auto));
        let message = size("64Q").err().map(|error| error.to_string());
        assert!(message.is_some_and(|m| m.contains("unknown unit")));
        let bytes = DiskSize::deserialize(U64Deserializer::<Error>::new(1 << 20));
        assert_eq!(bytes.ok(), Some(DiskSize::Bytes(1 << 20)));
        assert!(DiskSize::deserialize(U64Deserializer::<Error>::new(1000)).is_err());
        let layout = |text| Layout::deserialize(StrDeserializer::<Error>::new(text));
        assert_eq!(layout("mbr").ok(), Some(Layout::Mbr));
        assert_eq!(layout("none").ok(), Some(Layout::None));
        assert!(layout("gpt").is_err());
    }
}
