//! Finding where a key is written in a config's TOML text, for checks made after parsing.

use std::ops::Range;

use toml_edit::{ImDocument, Item};

/// The byte span of the value at `keys` (`["qemu", "cpu"]`; a number indexes an array or an
/// array of tables, `["case", "1", "name"]`), if the text has it.
pub fn span(text: &str, keys: &[&str]) -> Option<Range<usize>> {
    let document = ImDocument::parse(text).ok()?;
    let mut item: &Item = document.as_item();
    for key in keys {
        item = match key.parse::<usize>() {
            Ok(index) => item.get(index)?,
            Err(_) => item.get(key)?,
        };
    }
    item.span()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_dotted_keys() {
        let text = "arch = \"x86_64\"\n[qemu]\ncpu = \"host\"\n";
        assert_eq!(&text[span(text, &["qemu", "cpu"]).unwrap()], "\"host\"");
        let dotted = "qemu.memory = \"1G\"\n";
        assert_eq!(
            &dotted[span(dotted, &["qemu", "memory"]).unwrap()],
            "\"1G\""
        );
        assert!(span(text, &["qemu", "smp"]).is_none());
        let cases = "[[case]]\nname = \"a\"\n[[case]]\nname = \"b\"\n";
        assert_eq!(
            &cases[span(cases, &["case", "1", "name"]).unwrap()],
            "\"b\""
        );
    }
}
