//! The `durability` key: what a power cut may cost, against how much the
//! storage (often an SD card) is written and worn.

use serde::{Deserialize, Serialize};

/// How hard packgate pushes what it stores onto the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// SQLite `synchronous=NORMAL` (in WAL mode: a commit reaches the disk
    /// at the next checkpoint, the database is never corrupt) and the
    /// broker's own sync schedule. A power cut can lose the last commits
    /// since the checkpoint and what the broker acknowledged but had not
    /// yet synced; fewest writes.
    #[default]
    Fast,
    /// Every SQLite commit synced (`synchronous=FULL`), and the embedded
    /// broker syncs every message where its version can (nats-server 2.10
    /// and later, `sync_interval: always`). A stored sample survives a
    /// power cut; more writes to the disk.
    Safe,
}

impl Durability {
    /// The SQLite `synchronous` setting of this choice.
    pub const fn sqlite_synchronous(self) -> &'static str {
        match self {
            Durability::Fast => "NORMAL",
            Durability::Safe => "FULL",
        }
    }

    /// The setting's name, as written in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Durability::Fast => "fast",
            Durability::Safe => "safe",
        }
    }
}
