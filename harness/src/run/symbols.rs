//! Symbolizing guest addresses against the guest's ELF: `function+offset (file:line)`.
//!
//! Only addresses inside the ELF's executable sections are symbolized: a relocated (KASLR) or
//! foreign address is left as it is rather than guessed.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// The text symbols and line tables of one ELF.
pub struct Symbols {
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
    /// Reads `path`; `None` if it is not an object file with symbols.
    pub fn load(path: &Path) -> Option<Symbols> {
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
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
    pub fn describe(&self, address: u64) -> Option<String> {
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
