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
}
