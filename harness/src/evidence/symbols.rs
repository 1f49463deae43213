//! Symbolizing guest addresses against the guest's ELF: `function+offset (file:line)`.
//!
//! Only addresses inside the ELF's executable sections are symbolized: a relocated (KASLR) or
//! foreign address is left as it is rather than guessed. An address no sized function covers
//! is named after the nearest preceding symbol of its section when that symbol has no size (an
//! assembly label without `.type`/`.size`), and the text says so.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionIndex, SectionKind, SymbolKind};

/// What an unsized symbol's description adds: the name is a guess from position alone.
const NEAREST: &str = " (nearest preceding symbol; no size)";

/// A code symbol: a function (`.type @function`) or an untyped label in a text section.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CodeSymbol {
    start: u64,
    /// 0 for a label or a function without `.size`.
    size: u64,
    name: String,
    /// Index of its section (`SectionIndex.0`).
    section: usize,
}

/// The text symbols and line tables of one ELF.
pub(crate) struct Symbols {
    functions: Vec<CodeSymbol>,
    text: Vec<(u64, u64, usize)>,
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
        let text: Vec<(u64, u64, usize)> = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text && s.size() > 0)
            .map(|s| (s.address(), s.address() + s.size(), s.index().0))
            .collect();
        let in_text =
            |index: Option<SectionIndex>| text.iter().any(|t| index.map(|i| i.0) == Some(t.2));
        let mut functions: Vec<CodeSymbol> = file
            .symbols()
            .filter(|s| match s.kind() {
                SymbolKind::Text => s.address() != 0,
                // An assembly label without `.type` (STT_NOTYPE) defined in code.
                SymbolKind::Unknown | SymbolKind::Label => in_text(s.section_index()),
                _ => false,
            })
            .filter_map(|s| {
                Some(CodeSymbol {
                    start: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.to_string(),
                    section: s.section_index()?.0,
                })
            })
            .filter(|f| !f.name.is_empty() && !f.name.starts_with(".L") && !f.name.starts_with('$'))
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

    /// `function+0xoff (file:line)` for an address inside the text, else `None`; for an address
    /// only an unsized symbol precedes, `label+0xoff (nearest preceding symbol; no size)`.
    pub(crate) fn describe(&self, address: u64) -> Option<String> {
        let (_, _, section) = self
            .text
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&address))?;
        let preceding = &self.functions[..self.functions.partition_point(|f| f.start <= address)];
        // The innermost sized function that covers the address; else the nearest preceding
        // symbol of the same section, if it has no size (past a sized one's end is unknown).
        let (symbol, guessed) = match preceding
            .iter()
            .rev()
            .find(|f| f.size > 0 && address - f.start < f.size)
        {
            Some(function) => (function, false),
            None => {
                let nearest = preceding.iter().rev().find(|f| f.section == *section)?;
                if nearest.size > 0 {
                    return None;
                }
                (nearest, true)
            }
        };
        let mut text = match address - symbol.start {
            0 => symbol.name.clone(),
            offset => format!("{}+{offset:#x}", symbol.name),
        };
        if guessed {
            text.push_str(NEAREST);
        }
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
        let neighbour = symbols
            .functions
            .iter()
            .find(|f| f.name.contains("special_files_are_never_read"))
            .expect("this test's neighbour is among the functions");
        let found = symbols.describe(neighbour.start + 1).unwrap_or_default();
        assert!(
            found.starts_with(&format!("{}+0x1", neighbour.name)),
            "{found}"
        );
    }

    /// Builds an x86_64 ELF (clang, ld.lld) from assembly: `sized` is a function with a size,
    /// `untyped` a bare label (STT_NOTYPE, no size) 0x10 bytes of code long, `unsized` a
    /// function without `.size`, then `tail` past the end of sized `after`.
    fn assembly_elf(dir: &Path) -> std::path::PathBuf {
        let source = dir.join("labels.S");
        std::fs::write(
            &source,
            "\t.text\n\t.globl sized\n\t.type sized, @function\nsized:\n\tnop\n\tret\n\t.size sized, .-sized\n             untyped:\n\t.fill 0x20, 1, 0x90\n             \t.type unsized, @function\nunsized:\n\t.fill 0x8, 1, 0x90\n             \t.type after, @function\nafter:\n\tret\n\t.size after, .-after\n\t.fill 0x8, 1, 0x90\n",
        )
        .unwrap();
        let object = dir.join("labels.o");
        let elf = dir.join("labels.elf");
        for (program, args) in [
            (
                "clang",
                vec!["--target=x86_64-unknown-none-elf", "-c", "-o"],
            ),
            ("ld.lld", vec!["-Ttext=0x100000", "-o"]),
        ] {
            let (output, input) = if program == "clang" {
                (&object, &source)
            } else {
                (&elf, &object)
            };
            let status = std::process::Command::new(program)
                .args(args)
                .arg(output)
                .arg(input)
                .status()
                .expect("clang and ld.lld run (cargo xtask setup installs them)");
            assert!(status.success(), "{program} failed: {status}");
        }
        elf
    }

    /// An address in an assembly routine without `.type`/`.size` used to resolve to nothing
    /// (past the end of the sized function before it): it is named after the label, marked.
    #[test]
    fn labels_without_a_type_or_size_name_the_code_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let symbols = Symbols::load(&assembly_elf(dir.path())).expect("the ELF has symbols");
        let at = |name: &str| {
            symbols
                .functions
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{name} in {:?}", symbols.functions))
                .start
        };
        let described = [
            symbols.describe(at("sized") + 1),
            symbols.describe(at("untyped")),
            symbols.describe(at("untyped") + 0x10),
            symbols.describe(at("unsized") + 4),
            symbols.describe(at("after")),
            symbols.describe(at("after") + 4),
        ];
        assert_eq!(
            described,
            [
                Some("sized+0x1".to_string()),
                Some("untyped (nearest preceding symbol; no size)".to_string()),
                Some("untyped+0x10 (nearest preceding symbol; no size)".to_string()),
                Some("unsized+0x4 (nearest preceding symbol; no size)".to_string()),
                Some("after".to_string()),
                // Past a sized function's end: nothing names that code, so no guess.
                None,
            ]
        );
    }
}
