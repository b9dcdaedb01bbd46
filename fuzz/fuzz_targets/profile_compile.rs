//! The profile compiler: any text gives a located error or a profile
//! whose decoder and settings keep their rules on any registers.
//!
//! Input: the profile's TOML text, then a NUL byte and the register image
//! (big-endian words, repeated to fill every block).
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_drivers::profile::{Profile, ProfileError};

fn words(image: &[u8]) -> impl Iterator<Item = u16> {
    let mut words: Vec<u16> = image
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if words.is_empty() {
        words.push(0);
    }
    words.into_iter().cycle()
}

fuzz_target!(|data: &[u8]| {
    let (text, image) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let profile = match Profile::from_toml(text, "fuzz.toml") {
        Ok(profile) => profile,
        Err(ProfileError::Syntax { line, column, .. }) => {
            assert!(line >= 1 && column >= 1);
            assert!(line <= text.lines().count().max(1) + 1, "line {line}");
            return;
        }
        Err(_) => return,
    };
    let mut source = words(image);
    let blocks: Vec<Vec<u16>> = profile
        .blocks
        .iter()
        .map(|b| source.by_ref().take(usize::from(b.count)).collect())
        .collect();
    if let Ok(reading) = profile.decode(&blocks) {
        assert_eq!(reading.validate(), Ok(()), "{reading:?}");
    }
    let _ = profile.serial_number(&blocks);
    for setting in &profile.settings {
        let width = usize::from(setting.register_count());
        assert!(width == 1 || width == 2);
        for value in [setting.min, setting.max, (setting.min + setting.max) / 2.0] {
            let encoded = setting.encode(value);
            if value == setting.min || value == setting.max {
                assert!(encoded.is_ok(), "{}: {value} {encoded:?}", setting.name);
            }
            if let Ok(registers) = encoded {
                assert_eq!(registers.len(), width);
                let back = setting.decode(&registers);
                assert!(
                    matches!(back, Ok(v) if v.is_finite()),
                    "{}: {value} {back:?}",
                    setting.name
                );
            }
        }
        let raw: Vec<u16> = source.by_ref().take(width).collect();
        let _ = setting.decode(&raw);
    }
});
