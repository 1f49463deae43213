//! FAT file names: long-name validation, 8.3 short names with `~N` tails, LFN entries.

use std::collections::{HashMap, HashSet};

/// Longest long file name FAT can store, in UTF-16 code units.
const MAX_LFN_UNITS: usize = 255;
/// UTF-16 code units stored in one LFN directory entry.
const UNITS_PER_LFN_ENTRY: usize = 13;
/// NT case bit: the 8.3 base name is displayed in lowercase.
const CASE_LOWER_BASE: u8 = 0x08;
/// NT case bit: the 8.3 extension is displayed in lowercase.
const CASE_LOWER_EXT: u8 = 0x10;

/// How one directory entry's name is stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FatName {
    /// The 11-byte short name (base padded to 8, extension padded to 3).
    pub short: [u8; 11],
    /// NT case bits for byte 12 of the short entry.
    pub case_bits: u8,
    /// UTF-16 long name, when the name is not representable as a short name alone.
    pub long: Option<Vec<u16>>,
}

impl FatName {
    /// Number of 32-byte directory entries this name occupies (LFN entries + the short entry).
    pub fn entry_count(&self) -> usize {
        1 + self
            .long
            .as_ref()
            .map_or(0, |units| units.len().div_ceil(UNITS_PER_LFN_ENTRY))
    }

    /// Appends the LFN entries (if any) for this name to `out`, last fragment first.
    pub fn write_lfn_entries(&self, out: &mut Vec<u8>) {
        let Some(units) = &self.long else { return };
        let checksum = short_name_checksum(&self.short);
        let count = units.len().div_ceil(UNITS_PER_LFN_ENTRY);
        for ordinal in (1..=count).rev() {
            let mut chars = [0xFFFFu16; UNITS_PER_LFN_ENTRY];
            let start = (ordinal - 1) * UNITS_PER_LFN_ENTRY;
            let fragment = &units[start..units.len().min(start + UNITS_PER_LFN_ENTRY)];
            chars[..fragment.len()].copy_from_slice(fragment);
            if fragment.len() < UNITS_PER_LFN_ENTRY {
                chars[fragment.len()] = 0;
            }
            let mut entry = [0u8; 32];
            entry[0] = ordinal as u8 | if ordinal == count { 0x40 } else { 0 };
            entry[11] = 0x0F;
            entry[13] = checksum;
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (slot, unit) in slots.zip(chars) {
                entry[slot..slot + 2].copy_from_slice(&unit.to_le_bytes());
            }
            out.extend_from_slice(&entry);
        }
    }
}

/// The checksum of a short name that every LFN entry carries.
pub(crate) fn short_name_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &byte| sum.rotate_right(1).wrapping_add(byte))
}

/// Checks that `name` can be stored as a FAT long file name; the error says why not.
pub(crate) fn validate_long_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are reserved");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err("FAT names cannot end with `.` or a space");
    }
    if name.encode_utf16().count() > MAX_LFN_UNITS {
        return Err("longer than 255 UTF-16 code units");
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| (c as u32) < 0x20 || c == '\u{7f}' || "\"*/:<>?\\|".contains(c))
    {
        return Err(match bad {
            '/' | '\\' => "contains a path separator",
            c if (c as u32) < 0x20 || c == '\u{7f}' => "contains a control character",
            _ => "contains one of \" * : < > ? |",
        });
    }
    Ok(())
}

/// Characters allowed in a short name besides ASCII letters and digits.
fn is_short_special(c: char) -> bool {
    "!#$%&'()-@^_`{}~".contains(c)
}

/// Case of the letters in one part of an 8.3 name.
#[derive(PartialEq)]
enum PartCase {
    Upper,
    Lower,
    Mixed,
}

fn part_case(part: &str) -> PartCase {
    let has_upper = part.chars().any(|c| c.is_ascii_uppercase());
    let has_lower = part.chars().any(|c| c.is_ascii_lowercase());
    match (has_upper, has_lower) {
        (true, true) => PartCase::Mixed,
        (false, true) => PartCase::Lower,
        _ => PartCase::Upper,
    }
}

/// Packs an uppercase base and extension into the 11-byte on-disk form.
fn pack_short(base: &str, ext: &str) -> [u8; 11] {
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(base.as_bytes());
    short[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    short
}

/// The name as a short entry alone (with NT case bits), if it is a valid 8.3 name.
fn exact_short_name(name: &str) -> Option<([u8; 11], u8)> {
    let (base, ext) = match name.split_once('.') {
        Some((base, ext)) => (base, ext),
        None => (name, ""),
    };
    let valid_part = |part: &str| {
        part.chars()
            .all(|c| c.is_ascii_alphanumeric() || is_short_special(c))
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || !valid_part(base) || !valid_part(ext) {
        return None;
    }
    let mut case_bits = 0;
    for (part, bit) in [(base, CASE_LOWER_BASE), (ext, CASE_LOWER_EXT)] {
        match part_case(part) {
            PartCase::Mixed => return None,
            PartCase::Lower => case_bits |= bit,
            PartCase::Upper => {}
        }
    }
    let short = pack_short(&base.to_ascii_uppercase(), &ext.to_ascii_uppercase());
    Some((short, case_bits))
}

/// Maps a long-name fragment to short-name characters: uppercase, invalid ones become `_`.
fn basis_chars(part: &str, limit: usize) -> String {
    part.chars()
        .filter(|&c| c != ' ' && c != '.')
        .map(|c| {
            let upper = c.to_ascii_uppercase();
            if upper.is_ascii_alphanumeric() || is_short_special(upper) {
                upper
            } else {
                '_'
            }
        })
        .take(limit)
        .collect()
}

/// Short names already used in one directory, and the next `~N` tail to try per basis.
#[derive(Default)]
struct ShortNameTable {
    used: HashSet<[u8; 11]>,
    next_tail: HashMap<(String, String), u32>,
}

impl ShortNameTable {
    /// A unique `BASE~N.EXT` short name for a name that needs a long-name entry.
    fn tailed(&mut self, long: &str) -> [u8; 11] {
        let trimmed = long.trim_start_matches('.');
        let (base, ext) = match trimmed.rsplit_once('.') {
            Some((base, ext)) => (basis_chars(base, 8), basis_chars(ext, 3)),
            None => (basis_chars(trimmed, 8), String::new()),
        };
        let base = if base.is_empty() {
            "_".to_string()
        } else {
            base
        };
        let next = self
            .next_tail
            .entry((base.clone(), ext.clone()))
            .or_insert(1);
        loop {
            let tail = format!("~{next}");
            *next += 1;
            let keep = base.len().min(8 - tail.len());
            let short = pack_short(&format!("{}{tail}", &base[..keep]), &ext);
            if self.used.insert(short) {
                return short;
            }
        }
    }
}

/// Assigns on-disk names to the (already validated, case-insensitively unique) names of one
/// directory, in order. Short names are unique within the directory.
pub(crate) fn assign_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<FatName> {
    let mut table = ShortNameTable::default();
    let exact: Vec<Option<([u8; 11], u8)>> = names.clone().map(exact_short_name).collect();
    table
        .used
        .extend(exact.iter().flatten().map(|(short, _)| *short));
    names
        .zip(exact)
        .map(|(name, exact)| match exact {
            Some((short, case_bits)) => FatName {
                short,
                case_bits,
                long: None,
            },
            None => FatName {
                short: table.tailed(name),
                case_bits: 0,
                long: Some(name.encode_utf16().collect()),
            },
        })
        .collect()
}

/// Converts a volume label to its 11-byte form (uppercased, space padded).
pub(crate) fn label_bytes(label: &str) -> Result<[u8; 11], &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > 11 {
        return Err("longer than 11 characters");
    }
    let upper = label.to_ascii_uppercase();
    if !upper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || is_short_special(c))
    {
        return Err("only ASCII letters, digits, spaces and !#$%&'()-@^_`{}~ are allowed");
    }
    if upper.starts_with(' ') {
        return Err("cannot start with a space");
    }
    let mut bytes = [b' '; 11];
    bytes[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(name: &FatName) -> String {
        String::from_utf8_lossy(&name.short).into_owned()
    }

    #[test]
    fn exact_and_case_bit_names_need_no_long_entry() {
        let names = assign_names(["README.TXT", "kernel.bin", "BOOT", "run.SH"].into_iter());
        assert_eq!(short(&names[0]), "README  TXT");
        assert_eq!((names[0].case_bits, names[0].long.is_some()), (0, false));
        assert_eq!(short(&names[1]), "KERNEL  BIN");
        assert_eq!(names[1].case_bits, CASE_LOWER_BASE | CASE_LOWER_EXT);
        assert_eq!(short(&names[2]), "BOOT       ");
        assert_eq!(names[3].case_bits, CASE_LOWER_BASE);
        assert!(names.iter().all(|n| n.entry_count() == 1));
    }

    #[test]
    fn long_names_get_unique_tails() {
        let names = assign_names(
            [
                "nimbos-aarch64.bin",
                "nimbos-x86_64.bin",
                "NIMBOS~1.BIN",
                "Makefile",
                ".config",
            ]
            .into_iter(),
        );
        assert_eq!(short(&names[0]), "NIMBOS~2BIN");
        assert_eq!(short(&names[1]), "NIMBOS~3BIN");
        assert_eq!(short(&names[2]), "NIMBOS~1BIN");
        assert_eq!(short(&names[3]), "MAKEFI~1   ");
        assert_eq!(short(&names[4]), "CONFIG~1   ");
        assert_eq!(names[0].entry_count(), 3);
    }

    #[test]
    fn lfn_entries_carry_checksum_and_padding() {
        let name = &assign_names(["Makefile"].into_iter())[0];
        let mut out = Vec::new();
        name.write_lfn_entries(&mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], 0x41);
        assert_eq!(out[13], short_name_checksum(&name.short));
        assert_eq!(&out[1..3], &[b'M', 0]);
        assert_eq!(&out[20..22], &[0, 0], "terminator after 8 characters");
        assert_eq!(&out[22..24], &[0xFF, 0xFF], "padding after the terminator");
    }

    #[test]
    fn invalid_long_names_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "a:b",
            "trailing.",
            "x\u{1}",
            &"n".repeat(256),
        ] {
            assert!(validate_long_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_long_name("ünïcode name [1].txt").is_ok());
    }
}
