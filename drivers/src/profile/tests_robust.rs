//! Property-style tests over seeded pseudo-random inputs: garbage register
//! images never panic, settings round-trip.

use super::tests::{minimal, profile, profile_f32};
use super::*;

/// A small deterministic generator (xorshift64*), for garbage images.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn garbage_registers_never_panic() {
    let mut profiles: Vec<Profile> = Profile::builtin_names()
        .iter()
        .filter_map(|n| Profile::builtin(n))
        .collect();
    profiles.push(profile_f32());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2000 {
        for profile in &profiles {
            let blocks: Vec<Vec<u16>> = profile
                .blocks
                .iter()
                .map(|b| {
                    // Mostly well-sized blocks, sometimes wrong lengths.
                    let len = if round % 17 == 0 {
                        next(&mut state) as usize % 130
                    } else {
                        b.count.into()
                    };
                    (0..len).map(|_| next(&mut state) as u16).collect()
                })
                .collect();
            if let Ok(reading) = profile.decode(&blocks) {
                // Garbage decodes to a reading only when that reading is
                // possible; an impossible one is refused by the decoder.
                assert_eq!(reading.validate(), Ok(()), "{}", profile.name);
            }
            let _ = profile.serial_number(&blocks);
        }
    }
}

#[test]
fn an_impossible_state_of_charge_is_refused_not_decoded() {
    // Found by the profile_decode fuzz target: a SoC register of 33993
    // (3399.3 %) decoded into a reading.
    let profile = Profile::builtin("packgate-sim").unwrap();
    let mut blocks: Vec<Vec<u16>> = profile
        .blocks
        .iter()
        .map(|b| vec![0; usize::from(b.count)])
        .collect();
    blocks[0][0] = 5230; // 52.30 V
    blocks[0][2] = 33993; // SoC
    blocks[0][3] = 980; // SoH 98 %
    blocks[0][4] = 1; // one cell
    blocks[0][5] = 1; // one temperature
    blocks[0][16] = 3300; // 3.300 V
    blocks[0][48] = 250; // 25.0 degC
    let error = profile.decode(&blocks).unwrap_err().to_string();
    assert!(error.contains("impossible reading"), "{error}");
    assert!(error.contains("soc_pct"), "{error}");
}

#[test]
fn settings_round_trip_over_many_values() {
    let text = minimal("{ block = 0, offset = 1, type = \"i16\" }")
        + "[[settings]]\nname = \"a\"\nregister = 10\ntype = \"u16\"\nscale = 0.1\nmin = 0.0\nmax = 2000.0\n\
           [[settings]]\nname = \"b\"\nregister = 20\ntype = \"i32\"\nscale = 0.001\nvalue_offset = 5.0\nmin = -1000.0\nmax = 1000.0\nword_order = \"little\"\n\
           [[settings]]\nname = \"c\"\nregister = 30\ntype = \"f32\"\nmin = -1e6\nmax = 1e6\nread_back_register = 40\n\
           [[settings]]\nname = \"d\"\nregister = 50\ntype = \"i16\"\nscale = 0.5\nmin = -100.0\nmax = 100.0\n";
    let profile = profile(&text).unwrap();
    let mut state = 42u64;
    for setting in &profile.settings {
        let step = match setting.name.as_str() {
            "a" => 0.1,
            "b" => 0.001,
            "c" => 0.0,
            _ => 0.5,
        };
        for _ in 0..2000 {
            let unit = (next(&mut state) % 1_000_001) as f64 / 1_000_000.0;
            let value = setting.min + unit * (setting.max - setting.min);
            let words = setting.encode(value).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(words.len(), usize::from(setting.register_count()));
            let back = setting.decode(&words).unwrap();
            let tolerance = if step == 0.0 {
                value.abs() * 1e-6
            } else {
                step / 2.0 + 1e-9
            };
            assert!(
                (back - value).abs() <= tolerance,
                "{} {value} -> {back}",
                setting.name
            );
            // Encoding what was read back gives the same registers.
            assert_eq!(
                setting
                    .encode(back.clamp(setting.min, setting.max))
                    .unwrap(),
                words
            );
        }
    }
    let c = profile.setting("c").unwrap();
    assert_eq!(
        (c.register, c.read_back_register, c.register_count()),
        (30, 40, 2)
    );
    assert_eq!(profile.setting("a").unwrap().register_count(), 1);
}
