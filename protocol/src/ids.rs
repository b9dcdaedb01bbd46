//! Identities: which pack a message is about and which run of the collector
//! produced it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest pack id accepted; ids become NATS subject tokens and SQLite keys.
pub const MAX_PACK_ID_LEN: usize = 64;

/// Longest bank id accepted: a bank's id also names its metrics, whose
/// names are capped.
pub const MAX_BANK_ID_LEN: usize = 32;

/// Why a string is not a valid [`PackId`] or [`BankId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{what} id is empty")]
    Empty {
        /// `pack` or `bank`.
        what: &'static str,
    },
    /// The id is longer than its cap.
    #[error("{what} id {id:?} is longer than {max} characters")]
    TooLong {
        /// `pack` or `bank`.
        what: &'static str,
        /// The rejected id.
        id: String,
        /// The cap.
        max: usize,
    },
    /// The id holds a character that cannot appear in a NATS subject token.
    #[error("{what} id {id:?} holds {bad:?}; use letters, digits, '-' and '_' only")]
    BadCharacter {
        /// `pack` or `bank`.
        what: &'static str,
        /// The rejected id.
        id: String,
        /// The first offending character.
        bad: char,
    },
}

/// Checks that `id` is one NATS subject token of at most `max` bytes:
/// ASCII letters, digits, `-` and `_`.
fn check_token(what: &'static str, id: String, max: usize) -> Result<String, IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { what });
    }
    if id.len() > max {
        return Err(IdError::TooLong { what, id, max });
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadCharacter { what, id, bad });
    }
    Ok(id)
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
        check_token("pack", id.into(), MAX_PACK_ID_LEN).map(Self)
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

/// The configured identity of a bank: packs in parallel that an inverter
/// sees as one battery.
///
/// The same rules as a [`PackId`] (one NATS subject token), at most
/// [`MAX_BANK_ID_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BankId(String);

impl BankId {
    /// Validates and wraps a bank id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        check_token("bank", id.into(), MAX_BANK_ID_LEN).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BankId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for BankId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        BankId::new(raw).map_err(serde::de::Error::custom)
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
        assert_eq!(PackId::new(""), Err(IdError::Empty { what: "pack" }));
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
            Err(IdError::TooLong { max: 64, .. })
        ));
    }

    #[test]
    fn bank_id_keeps_the_pack_rules_with_a_shorter_cap() {
        assert_eq!(BankId::new("house_1").unwrap().as_str(), "house_1");
        assert_eq!(
            BankId::new("x".repeat(33)).unwrap_err().to_string(),
            format!("bank id {:?} is longer than 32 characters", "x".repeat(33))
        );
        assert!(BankId::new("x".repeat(32)).is_ok());
        assert!(matches!(
            BankId::new("a.b"),
            Err(IdError::BadCharacter {
                what: "bank",
                bad: '.',
                ..
            })
        ));
        assert!(serde_json_like_rejects());
    }

    /// A bank id that breaks the rules does not deserialize.
    fn serde_json_like_rejects() -> bool {
        use serde::de::value::{Error, StrDeserializer};
        use serde::de::IntoDeserializer;
        let bad: StrDeserializer<'_, Error> = "a b".into_deserializer();
        let good: StrDeserializer<'_, Error> = "ab".into_deserializer();
        BankId::deserialize(bad).is_err() && BankId::deserialize(good).is_ok()
    }

    #[test]
    fn boot_id_text_round_trips() {
        let boot = BootId(0x00ab_cdef_0123_4567);
        assert_eq!(boot.to_string(), "00abcdef01234567");
        assert_eq!(boot.to_string().parse::<BootId>().unwrap(), boot);
    }
}
