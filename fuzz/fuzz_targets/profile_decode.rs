//! The built-in profiles' register decoders and SunSpec model discovery on
//! any register image: typed errors, or readings that pass the sample rules.
//!
//! Input: `profile` (index into the built-ins), `shape` (0: every block its
//! profile length; otherwise the image is cut into blocks of `shape`
//! words), then the register image as big-endian words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_drivers::profile::sunspec::{find_sunspec_model, BATTERY_BASE_MODEL};
use packgate_drivers::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let [index, shape, image @ ..] = data else {
        return;
    };
    let names = Profile::builtin_names();
    let Some(profile) = Profile::builtin(names[usize::from(*index) % names.len()]) else {
        panic!("a built-in profile does not compile");
    };
    let words: Vec<u16> = image
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let blocks: Vec<Vec<u16>> = if *shape == 0 {
        let mut source = words.iter().copied().chain(std::iter::repeat(0));
        profile
            .blocks
            .iter()
            .map(|b| source.by_ref().take(usize::from(b.count)).collect())
            .collect()
    } else {
        words
            .chunks(usize::from(*shape))
            .map(<[u16]>::to_vec)
            .collect()
    };
    if let Ok(reading) = profile.decode(&blocks) {
        assert_eq!(reading.validate(), Ok(()), "{}: {reading:?}", profile.name);
    }
    let _ = profile.serial_number(&blocks);
    if let Ok(offset) = find_sunspec_model(&words, BATTERY_BASE_MODEL) {
        assert_eq!(words[offset], BATTERY_BASE_MODEL);
    }
    for setting in &profile.settings {
        let width = usize::from(setting.register_count());
        if let Some(raw) = words.get(..width) {
            let _ = setting.decode(raw);
        }
    }
});
