//! Finding where a key is written in a config's TOML text, for checks made after parsing.

use std::ops::Range;

use toml_edit::{DocumentMut, ImDocument, Item};

/// The byte span of the value at `keys` (`["qemu", "cpu"]`; a number indexes an array or an
/// array of tables, `["case", "1", "name"]`), if the text has it.
pub(super) fn span(text: &str, keys: &[&str]) -> Option<Range<usize>> {
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

/// One step into a TOML document: a key, or an index into an array (of tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    /// A key of a table or inline table.
    Key(String),
    /// An element of an array or array of tables.
    Index(usize),
}

/// Which part of an entry a position is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The key (`baner` in `baner = [...]`).
    Key,
    /// The value.
    Value,
}

/// The path of the key or value that starts at byte `offset` of `text` (where a parser
/// error about it points), if one does.
pub(super) fn path_at(text: &str, offset: usize) -> Option<(Vec<Segment>, Part)> {
    let document = ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    let part = find(document.as_item(), offset, &mut path)?;
    Some((path, part))
}

fn find(item: &Item, offset: usize, path: &mut Vec<Segment>) -> Option<Part> {
    if let Some(table) = item.as_table_like() {
        for (name, child) in table.iter() {
            path.push(Segment::Key(name.to_string()));
            let key = table.get_key_value(name).and_then(|(key, _)| key.span());
            if key.is_some_and(|span| span.start == offset) {
                return Some(Part::Key);
            }
            if let Some(part) = find(child, offset, path) {
                return Some(part);
            }
            path.pop();
        }
    }
    if item.is_value() && item.span().is_some_and(|span| span.start == offset) {
        return Some(Part::Value);
    }
    let len = match item {
        Item::ArrayOfTables(tables) => tables.len(),
        Item::Value(toml_edit::Value::Array(values)) => values.len(),
        _ => 0,
    };
    for index in 0..len {
        path.push(Segment::Index(index));
        if let Some(part) = item.get(index).and_then(|child| find(child, offset, path)) {
            return Some(part);
        }
        path.pop();
    }
    None
}

/// `text` without the entry at `path` (its key and value: a whole table for a table),
/// written out again; `None` if there is no such key.
pub(super) fn without_key(text: &str, path: &[Segment]) -> Option<String> {
    let mut document: DocumentMut = text.parse().ok()?;
    let (Segment::Key(last), parents) = path.split_last()? else {
        return None;
    };
    let mut item = document.as_item_mut();
    for segment in parents {
        let found = match segment {
            Segment::Key(key) => item.as_table_like()?.contains_key(key),
            Segment::Index(index) => item.get(*index).is_some(),
        };
        if !found {
            return None;
        }
        item = match segment {
            Segment::Key(key) => item.get_mut(key.as_str())?,
            Segment::Index(index) => item.get_mut(*index)?,
        };
    }
    item.as_table_like_mut()?.remove(last)?;
    Some(document.to_string())
}

/// The byte span of the key or the value at `path`, if the text has it.
pub(super) fn part_span(text: &str, path: &[Segment], part: Part) -> Option<Range<usize>> {
    let document = ImDocument::parse(text).ok()?;
    let (last, parents) = path.split_last()?;
    let mut item: &Item = document.as_item();
    for segment in parents {
        item = match segment {
            Segment::Key(key) => item.get(key.as_str())?,
            Segment::Index(index) => item.get(*index)?,
        };
    }
    match (last, part) {
        (Segment::Key(name), Part::Key) => item.as_table_like()?.get_key_value(name)?.0.span(),
        (Segment::Key(name), Part::Value) => item.get(name.as_str())?.span(),
        (Segment::Index(index), Part::Value) => item.get(*index)?.span(),
        (Segment::Index(_), Part::Key) => None,
    }
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

#[cfg(test)]
mod path_tests {
    use super::*;

    fn key(name: &str) -> Segment {
        Segment::Key(name.into())
    }

    #[test]
    fn entries_are_found_removed_and_located_in_every_kind_of_table() {
        let text = "a.b = 1\n[t]\nx = [{ y = 1, z = 2 }]\n[[arr]]\nk = 1\n[[arr]]\nk = 2\n";
        for (written, path) in [
            ("b = 1", vec![key("a"), key("b")]),
            (
                "z = 2",
                vec![key("t"), key("x"), Segment::Index(0), key("z")],
            ),
            ("k = 2", vec![key("arr"), Segment::Index(1), key("k")]),
        ] {
            let offset = text.find(written).unwrap();
            assert_eq!(path_at(text, offset), Some((path.clone(), Part::Key)));
            let value = offset + written.len() - 1;
            assert_eq!(path_at(text, value), Some((path.clone(), Part::Value)));
            assert_eq!(part_span(text, &path, Part::Key).unwrap().start, offset);
            assert_eq!(part_span(text, &path, Part::Value).unwrap().start, value);
            let rest = without_key(text, &path).unwrap();
            assert!(!rest.contains(written), "{rest}");
            assert!(rest.parse::<DocumentMut>().is_ok(), "{rest}");
        }
        let element = text.find("{ y").unwrap();
        let path = vec![key("t"), key("x"), Segment::Index(0)];
        assert_eq!(path_at(text, element), Some((path, Part::Value)));
        let rest = without_key(text, &[key("t")]).unwrap();
        assert!(!rest.contains("[t]") && !rest.contains("y = 1"), "{rest}");
        assert_eq!(without_key(text, &[key("t"), key("nope")]), None);
        assert_eq!(without_key(text, &[key("nope"), key("x")]), None);
    }
}
