//! Where a dotted key (`collect.inflight_max`, `packs[1].unit_id`) is in
//! the configuration text, so an error found after parsing names its line
//! as a parse error does.

use toml::de::{DeTable, DeValue};

/// One step of a dotted key.
enum Step<'a> {
    /// A table key.
    Key(&'a str),
    /// An index into an array (`[1]`).
    Index(usize),
}

fn steps(key: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in key.split('.') {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            steps.push(Step::Key(name));
        }
        for index in indexes.split('[') {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                steps.push(Step::Index(index));
            }
        }
    }
    steps
}

/// The 1-based line of `key` in `text`: of the key itself when the file
/// gives it, else of the nearest enclosing table or array entry that it
/// gives (a default found wrong is reported where its section is); none
/// when the file gives none of it.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut at: Option<usize> = None;
    let mut value: Option<&DeValue<'_>> = None;
    for step in steps(key) {
        match (step, value) {
            (Step::Key(name), None | Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(inner)) = value {
                    table = inner;
                }
                let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                    break;
                };
                at = Some(k.span().start);
                value = Some(v.get_ref());
            }
            (Step::Index(index), Some(DeValue::Array(items))) => {
                let Some(item) = items.get(index) else {
                    break;
                };
                at = Some(item.span().start);
                value = Some(item.get_ref());
            }
            _ => break,
        }
    }
    let offset = at?;
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

/// The 1-based line and column (in characters) of byte `offset` of
/// `text`.
pub(super) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The key written on the line of byte `offset` of `text` (what is left
/// of its `=`), never its value; none on a line without one.
pub(super) fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset).unwrap_or(text);
    let start = before.rfind('\n').map_or(0, |at| at + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_start_matches('{').trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "data_dir = \"/d\"\n\n[collect]\npoll_interval_ms = 5\n\n\
                        [[packs]]\nid = \"a\"\ndriver = \"sim\"\n\n[[packs]]\nid = \"b\"\n\
                        driver = \"modbus\"\nunit_id = 300\n";

    #[test]
    fn finds_keys_array_entries_and_their_sections() {
        assert_eq!(line_of(TEXT, "data_dir"), Some(1));
        assert_eq!(line_of(TEXT, "collect.poll_interval_ms"), Some(4));
        // Not in the file: its section.
        assert_eq!(line_of(TEXT, "collect.inflight_max"), Some(3));
        assert_eq!(line_of(TEXT, "packs[1].unit_id"), Some(13));
        // Not in the entry: the entry.
        assert_eq!(line_of(TEXT, "packs[1].bus"), line_of(TEXT, "packs[1]"));
        assert!(
            matches!(line_of(TEXT, "packs[1]"), Some(10 | 11)),
            "{:?}",
            line_of(TEXT, "packs[1]")
        );
        assert_eq!(line_of(TEXT, "streams.samples.max_bytes"), None);
        assert_eq!(line_of("not toml [", "a"), None);
    }

    #[test]
    fn counts_lines_and_characters_from_one() {
        assert_eq!(line_and_column("a\nbc = 1\n", 0), (1, 1));
        assert_eq!(line_and_column("a\nbc = 1\n", 5), (2, 4));
        assert_eq!(line_and_column("é\nx", 3), (2, 1));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }

    #[test]
    fn names_the_key_of_a_line_but_not_its_value() {
        let text = "[cloud]\npasword = \"hunter2\"\n";
        assert_eq!(key_on_line(text, 12).as_deref(), Some("pasword"));
        assert_eq!(key_on_line(text, 0), None);
        assert_eq!(key_on_line("# a = b\n", 2), None);
    }
}
