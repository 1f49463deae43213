//! Symbolizing guest addresses against the guest's ELF: `function+offset (file:line)`.
//!
//! Only addresses inside the ELF's executable sections are symbolized: a relocated (KASLR) or
//! foreign address is left as it is rather than guessed.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// The text symbols and line tables of one ELF.
pub(crate) struct Symbols {
    functions: Vec<(u64, u64, String)>,
    text: Vec<(u64, u64)>,
    lines: Option<addr2line::Loader>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Symbols({} functions)", self.functions.len())
    }
}

impl Symbols {
    /// Reads `path`; `None` if it is not an object file with symbols, or not a regular file.
    ///
    /// Memory stays bounded by what the ELF's headers, symbol and string tables take: the
    /// file is read through [`object::ReadCache`] (only the parts parsed), and a FIFO, a
    /// device or a directory is refused without being read (or waited on).
    pub(crate) fn load(path: &Path) -> Option<Symbols> {
        let (file, _) = crate::regular_file::open_regular(path).ok()?;
        let data = object::ReadCache::new(file);
        let file = object::File::parse(&data).ok()?;
        let text: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address() + s.size()))
            .collect();
        let mut functions: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text) && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .filter(|(_, _, name)| !name.is_empty() && !name.starts_with(".L"))
            .collect();
        functions.sort();
        if functions.is_empty() || text.is_empty() {
            return None;
        }
        Some(Symbols {
            functions,
            text,
            lines: addr2line::Loader::new(path).ok(),
        })
    }

    /// `function+0xoff (file:line)` for an address inside the text, else `None`.
    pub(crate) fn describe(&self, address: u64) -> Option<String> {
        if !self
            .text
            .iter()
            .any(|(start, end)| (*start..*end).contains(&address))
        {
            return None;
        }
        let index = self
            .functions
            .partition_point(|(start, _, _)| *start <= address);
        let (start, size, name) = self.functions.get(index.checked_sub(1)?)?;
        if *size > 0 && address >= start + size {
            return None;
        }
        let mut text = match address - start {
            0 => name.clone(),
            offset => format!("{name}+{offset:#x}"),
        };
        let location = self
            .lines
            .as_ref()
            .and_then(|lines| lines.find_location(address).ok().flatten());
        if let Some(location) = location {
            if let (Some(file), Some(line)) = (location.file, location.line) {
                text.push_str(&format!(" ({file}:{line})"));
            }
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/zero` used to be read until memory ran out, a FIFO waited for a writer forever.
    #[test]
    fn special_files_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for path in [Path::new("/dev/zero"), &fifo, &socket, dir.path()] {
            assert!(Symbols::load(path).is_none(), "{}", path.display());
        }
        // A sparse file far larger than memory that is no ELF: only its header is read.
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        assert!(Symbols::load(&huge).is_none());
    }

    #[test]
    fn an_elf_with_symbols_still_loads() {
        let exe = std::env::current_exe().unwrap();
        let symbols = Symbols::load(&exe).expect("the test binary has symbols");
        let (address, _, name) = symbols
            .functions
            .iter()
            .find(|(_, _, name)| name.contains("special_files_are_never_read"))
            .expect("this test's neighbour is among the functions");
        let found = symbols.describe(*address + 1).unwrap_or_default();
        assert!(found.starts_with(&format!("{name}+0x1")), "{found}");
    }
}
