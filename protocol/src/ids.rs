//! Identities: which pack a message is about and which run of the collector
//! produced it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest pack id accepted; ids become NATS subject tokens and SQLite keys.
pub const MAX_PACK_ID_LEN: usize = 64;

/// Why a string is not a valid [`PackId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("pack id is empty")]
    Empty,
    /// The id is longer than [`MAX_PACK_ID_LEN`].
    #[error("pack id {0:?} is longer than {MAX_PACK_ID_LEN} characters")]
    TooLong(String),
    /// The id holds a character that cannot appear in a NATS subject token.
    #[error("pack id {id:?} holds {bad:?}; use letters, digits, '-' and '_' only")]
    BadCharacter {
        /// The rejected id.
        id: String,
        /// The first offending character.
        bad: char,
    },
}

/// The configured identity of a battery pack.
///
/// A pack is known by this id, never by its bus position or unit address,
/// so two identical packs on two buses can never be confused. The id is one
/// NATS subject token: ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PackId(String);

impl PackId {
    /// Validates and wraps a pack id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > MAX_PACK_ID_LEN {
            return Err(IdError::TooLong(id));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(IdError::BadCharacter { id, bad });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PackId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for PackId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PackId::new(raw).map_err(serde::de::Error::custom)
    }
}

/// One run of a collector: a fresh random value at every start.
///
/// Sequence numbers restart at 1 with each boot, so `(pack, boot, seq)` is
/// unique across restarts and orders the samples of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BootId(pub u64);

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for BootId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(BootId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_id_accepts_subject_safe_names() {
        assert_eq!(PackId::new("rack-1_a").unwrap().as_str(), "rack-1_a");
    }

    #[test]
    fn pack_id_rejects_what_breaks_a_subject() {
        assert_eq!(PackId::new(""), Err(IdError::Empty));
        assert!(matches!(
            PackId::new("a.b"),
            Err(IdError::BadCharacter { bad: '.', .. })
        ));
        assert!(matches!(
            PackId::new("a b"),
            Err(IdError::BadCharacter { bad: ' ', .. })
        ));
        assert!(matches!(
            PackId::new("x".repeat(65)),
            Err(IdError::TooLong(_))
        ));
    }

    #[test]
    fn boot_id_text_round_trips() {
        let boot = BootId(0x00ab_cdef_0123_4567);
        assert_eq!(boot.to_string(), "00abcdef01234567");
        assert_eq!(boot.to_string().parse::<BootId>().unwrap(), boot);
    }
}
