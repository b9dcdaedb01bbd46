//! Reading a `[[buses]]` or `[[packs]]` entry whose keys depend on one of
//! them (`kind = "modbus_rtu"`, `driver = "can"`): the entry's common key,
//! its tag, and the rest read as that tag's own table, so a key that does
//! not belong there is an error naming the key and the tag as the file
//! spells it.

use serde::de::{DeserializeOwned, Error};

/// The parts of one tagged entry.
#[derive(Debug)]
pub(super) struct Entry {
    /// The key every entry has (`name`, `id`).
    pub(super) common: toml::Value,
    /// The tag's value, such as `modbus_rtu`.
    pub(super) tag: String,
    /// The other keys.
    pub(super) rest: toml::Table,
}

/// Splits `table` into its `common` key, its `tag` and the rest, erring
/// when either is missing or the tag is not one of `tags`.
pub(super) fn split<E: Error>(
    mut table: toml::Table,
    common: &'static str,
    tag: &'static str,
    tags: &'static [&'static str],
) -> Result<Entry, E> {
    let common_value = table
        .remove(common)
        .ok_or_else(|| E::missing_field(common))?;
    let tag_value = match table.remove(tag) {
        Some(toml::Value::String(value)) => value,
        Some(other) => {
            return Err(E::custom(format!(
                "{tag} must be a string, one of {}; found {other}",
                tags.join(", ")
            )))
        }
        None => return Err(E::missing_field(tag)),
    };
    if !tags.contains(&tag_value.as_str()) {
        return Err(E::custom(format!(
            "unknown {tag} = \"{tag_value}\", expected one of {}",
            tags.join(", ")
        )));
    }
    Ok(Entry {
        common: common_value,
        tag: tag_value,
        rest: table,
    })
}

impl Entry {
    /// The common key's value as `T`.
    pub(super) fn common<T: DeserializeOwned, E: Error>(&self, key: &str) -> Result<T, E> {
        T::deserialize(self.common.clone())
            .map_err(|e| E::custom(format!("{key}: {}", e.message())))
    }

    /// The other keys as the tag's table `T`; an error says which tag.
    pub(super) fn variant<T: DeserializeOwned, E: Error>(self, tag: &str) -> Result<T, E> {
        let kind = self.tag;
        T::deserialize(toml::Value::Table(self.rest))
            .map_err(|e| E::custom(format!("{tag} = \"{kind}\": {}", e.message())))
    }
}
