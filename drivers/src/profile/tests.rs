//! Profile tests: builtins, the packgate-sim map, value decoding, settings
//! and robustness against garbage registers.

use packgate_protocol::{AlarmFlags, BalancingState, CellVoltages, PackReading, Temperatures};

use super::*;

/// A profile with one holding block of `count` registers and the given
/// `[fields]`/arrays body appended.
pub(super) fn profile(extra: &str) -> Result<Profile, ProfileError> {
    let text = format!("name = \"t\"\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 40\n{extra}");
    Profile::from_toml(&text, "test.toml")
}

/// Minimal valid fields and arrays; `fields` replaces the current field.
pub(super) fn minimal(current: &str) -> String {
    format!(
        "[fields]\npack_voltage_v = {{ block = 0, offset = 0, type = \"u16\" }}\n\
         current_a = {current}\nsoc_pct = {{ block = 0, offset = 5, type = \"u16\" }}\n\
         [cells]\nblock = 0\noffset = 10\ntype = \"u16\"\ncount = 1\n\
         [temperatures]\nblock = 0\noffset = 20\ntype = \"u16\"\ncount = 1\n"
    )
}

/// Decodes the current field of [`minimal`] from registers 1 and 2 set to
/// `words`.
fn current(spec: &str, words: &[u16]) -> f32 {
    let profile = profile(&minimal(spec)).unwrap();
    let mut regs = vec![0u16; 40];
    regs[1..1 + words.len()].copy_from_slice(words);
    profile.decode(&[regs]).unwrap().current_a
}

#[test]
fn every_builtin_loads_and_decodes_a_plausible_image() {
    assert_eq!(
        Profile::builtin_names(),
        &["packgate-sim", "sunspec-802", "jk-bms-pb", "seplos-v3"]
    );
    for name in Profile::builtin_names() {
        let source = Profile::builtin_source(name).unwrap();
        let profile = Profile::from_toml(source, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(profile.name, *name);
        assert_eq!(resolve(name).unwrap(), profile);
        assert!(Profile::builtin(name).is_some());
        // All registers 1: counts are 1, scale factors 10^1.
        let mut blocks: Vec<Vec<u16>> = profile
            .blocks
            .iter()
            .map(|b| vec![1; b.count.into()])
            .collect();
        if *name == "jk-bms-pb" {
            blocks[1][1] = 0; // the u32 cell count, low word first
        }
        let reading = profile
            .decode(&blocks)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(reading.validate(), Ok(()), "{name}");
    }
    assert!(Profile::builtin("nope").is_none());
}

#[test]
fn resolve_reads_user_files_and_names_the_unknown() {
    let dir = std::env::temp_dir().join(format!("packgate-profile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mine.toml");
    let text = Profile::builtin_source("packgate-sim")
        .unwrap()
        .replace("\"packgate-sim\"", "\"mine\"");
    std::fs::write(&path, text).unwrap();
    assert_eq!(resolve(path.to_str().unwrap()).unwrap().name, "mine");
    let err = resolve("no-such-profile").unwrap_err();
    assert!(matches!(err, ProfileError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("packgate-sim"));
    std::fs::write(&path, "name = 3").unwrap();
    assert!(matches!(
        resolve(path.to_str().unwrap()),
        Err(ProfileError::Syntax { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The simulator's image of a known reading, built register by register.
#[test]
fn packgate_sim_decodes_a_hand_built_image_exactly() {
    let profile = Profile::builtin("packgate-sim").unwrap();
    assert_eq!(
        profile.blocks,
        vec![RegisterBlock {
            function: ReadFunction::Holding,
            start: 0,
            count: 64
        }]
    );
    let mut regs = vec![0u16; 64];
    regs[0] = 5284; // 52.84 V
    regs[1] = (-125i16) as u16; // -12.5 A
    regs[2] = 712; // 71.2 %
    regs[3] = 985; // 98.5 %
    regs[4] = 16;
    regs[5] = 4;
    regs[6] = 0x0001; // balancing: cell 17 ...
    regs[7] = 0x0004; // ... and cell 3
    regs[8] = 0;
    regs[9] = 1 << 6; // over_temperature
    regs[10] = 0b10; // charge disabled, discharge enabled
    regs[11] = 0x0001;
    regs[12] = 0xe240; // serial 123456
    let cells_mv: Vec<u16> = (0..16).map(|i| 3300 + i).collect();
    regs[16..32].copy_from_slice(&cells_mv);
    let temps: [i16; 4] = [251, 260, -45, 300];
    for (i, t) in temps.iter().enumerate() {
        regs[48 + i] = *t as u16;
    }
    regs[40] = 9999; // beyond the cell count: ignored
    let reading = profile.decode(&[regs.clone()]).unwrap();
    let expected = PackReading {
        pack_voltage_v: 5284.0 * 0.01,
        current_a: -125.0 * 0.1,
        soc_pct: (712.0 * 0.1) as f32,
        soh_pct: Some((985.0 * 0.1) as f32),
        cell_voltages_v: CellVoltages(
            cells_mv
                .iter()
                .map(|mv| (f64::from(*mv) * 0.001) as f32)
                .collect(),
        ),
        temperatures_c: Temperatures(temps.iter().map(|t| (f64::from(*t) * 0.1) as f32).collect()),
        balancing: BalancingState(0x0001_0004),
        alarms: AlarmFlags::OVER_TEMPERATURE,
        charge_enabled: false,
        discharge_enabled: true,
    };
    assert_eq!(reading, expected);
    assert_eq!(reading.validate(), Ok(()));
    assert_eq!(reading.min_cell_v(), 3.3);
    assert_eq!(profile.serial_number(&[regs]), Some("123456".to_owned()));

    let charge = profile.setting("charge_current_limit_a").unwrap();
    assert_eq!((charge.register, charge.read_back_register), (100, 100));
    assert_eq!(charge.encode(150.0), Ok(vec![1500]));
    assert_eq!(
        profile
            .setting("discharge_current_limit_a")
            .unwrap()
            .register,
        101
    );
    assert!(profile.setting("other").is_none());
}

#[test]
fn alarm_bits_follow_packgate_flags_one_by_one() {
    let profile = Profile::builtin("packgate-sim").unwrap();
    for (flag, _) in AlarmFlags::ALL {
        let mut regs = vec![0u16; 64];
        (regs[4], regs[5]) = (1, 1);
        (regs[8], regs[9]) = ((flag.0 >> 16) as u16, flag.0 as u16);
        assert_eq!(profile.decode(&[regs]).unwrap().alarms, *flag);
    }
}

#[test]
fn count_from_is_bounded_by_max_count() {
    let sim = Profile::builtin("packgate-sim").unwrap();
    let mut regs = vec![0u16; 64];
    (regs[4], regs[5]) = (32, 16);
    let reading = sim.decode(&[regs.clone()]).unwrap();
    assert_eq!(reading.cell_voltages_v.0.len(), 32);
    assert_eq!(reading.temperatures_c.0.len(), 16);
    for (cells, temps, field) in [(33, 1, "cells"), (0, 1, "cells"), (1, 17, "temperatures")] {
        (regs[4], regs[5]) = (cells, temps);
        assert!(
            matches!(sim.decode(&[regs.clone()]), Err(RegisterDecodeError::CountOutOfRange { field: f, .. }) if f == field),
            "{cells} {temps}"
        );
    }
    let capped = profile(
        &minimal("{ block = 0, offset = 1, type = \"i16\" }").replace(
            "count = 1\n[temperatures]",
            "count_from = { block = 0, offset = 5 }\nmax_count = 3\n[temperatures]",
        ),
    )
    .unwrap();
    let mut regs = vec![0u16; 40];
    regs[5] = 3;
    assert_eq!(
        capped
            .decode(&[regs.clone()])
            .unwrap()
            .cell_voltages_v
            .0
            .len(),
        3
    );
    regs[5] = 4;
    assert_eq!(
        capped.decode(&[regs]),
        Err(RegisterDecodeError::CountOutOfRange {
            field: "cells",
            count: 4,
            max: 3
        })
    );
}

#[test]
fn decodes_every_type_with_scale_offset_and_invert() {
    assert_eq!(
        current("{ block = 0, offset = 1, type = \"u16\" }", &[65535]),
        65535.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"i16\", scale = 0.5 }",
            &[0xfffe]
        ),
        -1.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"i16\", invert = true }",
            &[5]
        ),
        -5.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"u16\", scale = 2.0, value_offset = -10.0 }",
            &[7]
        ),
        4.0
    );
    assert_eq!(
        current("{ block = 0, offset = 1, type = \"u32\" }", &[1, 2]),
        65538.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"u32\", word_order = \"little\" }",
            &[2, 1]
        ),
        65538.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"i32\" }",
            &[0xffff, 0xff9c]
        ),
        -100.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"i32\", word_order = \"little\" }",
            &[0xff9c, 0xffff]
        ),
        -100.0
    );
    let [h, l] = [(2.5f32.to_bits() >> 16) as u16, 2.5f32.to_bits() as u16];
    assert_eq!(
        current("{ block = 0, offset = 1, type = \"f32\" }", &[h, l]),
        2.5
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"f32\", word_order = \"little\" }",
            &[l, h]
        ),
        2.5
    );
    assert_eq!(
        current("{ block = 0, offset = 1, type = \"u8_high\" }", &[0x0102]),
        1.0
    );
    assert_eq!(
        current("{ block = 0, offset = 1, type = \"u8_low\" }", &[0x0102]),
        2.0
    );
    assert_eq!(
        current(
            "{ block = 0, offset = 1, type = \"u16\", scale_from = { block = 0, offset = 2 } }",
            &[5, 0xfffe]
        ),
        0.05
    );
}

#[test]
fn profile_word_order_is_the_default_for_32_bit_values() {
    let text = minimal("{ block = 0, offset = 1, type = \"u32\" }");
    let little = Profile::from_toml(
        &format!("name = \"t\"\nword_order = \"little\"\n[[blocks]]\nfunction = 4\nstart = 0\ncount = 40\n{text}"),
        "t",
    )
    .unwrap();
    assert_eq!(little.blocks[0].function, ReadFunction::Input);
    let mut regs = vec![0u16; 40];
    (regs[1], regs[2]) = (2, 1);
    assert_eq!(little.decode(&[regs]).unwrap().current_a, 65538.0);
}

#[test]
fn flags_from_bits_integers_and_true_values() {
    let flags = |charge: &str, word: u16| {
        let text = minimal("{ block = 0, offset = 1, type = \"i16\" }")
            .replace("soc_pct", &format!("charge_enabled = {charge}\nsoc_pct"));
        let profile = profile(&text).unwrap();
        let mut regs = vec![0u16; 40];
        regs[30] = word;
        profile.decode(&[regs]).unwrap().charge_enabled
    };
    let bit = "{ block = 0, offset = 30, type = \"bits\", bit = 3 }";
    assert!(flags(bit, 0b1000));
    assert!(!flags(bit, 0b0111));
    let inverted = "{ block = 0, offset = 30, type = \"bits\", bit = 3, invert = true }";
    assert!(!flags(inverted, 0b1000));
    assert!(flags(inverted, 0));
    assert!(flags("{ block = 0, offset = 30, type = \"u16\" }", 7));
    assert!(!flags("{ block = 0, offset = 30, type = \"u16\" }", 0));
    let state = "{ block = 0, offset = 30, type = \"u16\", true_values = [3, 4] }";
    assert!(flags(state, 4));
    assert!(!flags(state, 1));
}

#[test]
fn absent_optional_fields_take_their_documented_defaults() {
    let profile = profile(&minimal("{ block = 0, offset = 1, type = \"i16\" }")).unwrap();
    let reading = profile.decode(&[vec![0; 40]]).unwrap();
    assert_eq!(reading.soh_pct, None);
    assert!(reading.charge_enabled && reading.discharge_enabled);
    assert_eq!(reading.balancing, BalancingState(0));
    assert_eq!(reading.alarms, AlarmFlags::NONE);
    assert_eq!(profile.serial_number(&[vec![0; 40]]), None);
}

#[test]
fn serial_number_as_ascii() {
    let text = minimal("{ block = 0, offset = 1, type = \"i16\" }")
        + "[serial_number]\nblock = 0\noffset = 30\ntype = \"ascii\"\ncount = 4\n";
    let profile = profile(&text).unwrap();
    let mut regs = vec![0u16; 40];
    regs[30..34].copy_from_slice(&[
        u16::from_be_bytes(*b"PG"),
        u16::from_be_bytes(*b"-1"),
        u16::from_be_bytes(*b"2\0"),
        0,
    ]);
    assert_eq!(
        profile.serial_number(&[regs.clone()]),
        Some("PG-12".to_owned())
    );
    regs[30] = 0xffff; // not UTF-8
    assert_eq!(profile.serial_number(&[regs.clone()]), None);
    assert!(
        profile.decode(&[regs]).is_ok(),
        "a bad serial does not fail the poll"
    );
}

#[test]
fn sunspec_scale_factors_are_applied_and_checked() {
    let profile = Profile::builtin("sunspec-802").unwrap();
    let mut b0 = vec![0u16; 64];
    let mut b1 = vec![0u16; 28];
    (b0[34], b0[59]) = (5120, (-2i16) as u16); // 51.20 V
    (b0[44], b0[61]) = ((-305i16) as u16, (-1i16) as u16); // -30.5 A
    (b0[11], b0[56]) = (80, 0); // 80 %
    (b0[13], b0[58]) = (99, 0);
    (b0[37], b0[40], b0[60]) = (3350, 3310, (-3i16) as u16);
    b0[22] = 3; // CONNECTED
    b0[27] = 1 << 1; // Evt1 OVER_TEMP_ALARM (low word)
    (b1[4], b1[7], b1[23]) = (315, (-52i16) as u16, (-1i16) as u16);
    let reading = profile.decode(&[b0.clone(), b1.clone()]).unwrap();
    assert_eq!(reading.pack_voltage_v, 51.2);
    assert_eq!(reading.current_a, -30.5);
    assert_eq!(reading.soc_pct, 80.0);
    assert_eq!(reading.cell_voltages_v.0, vec![3.35, 3.31]);
    assert_eq!(reading.temperatures_c.0, vec![31.5, -5.2]);
    assert_eq!(reading.alarms, AlarmFlags::OVER_TEMPERATURE);
    assert!(reading.charge_enabled && reading.discharge_enabled);
    b0[59] = 0x8000; // V_SF not implemented
    assert!(matches!(
        profile.decode(&[b0, b1]),
        Err(RegisterDecodeError::ScaleFactor { sf: i16::MIN, .. })
    ));
}

#[test]
fn decode_rejects_wrong_block_shapes_and_non_finite_values() {
    let profile = Profile::builtin("packgate-sim").unwrap();
    assert_eq!(
        profile.decode(&[]),
        Err(RegisterDecodeError::BlockCount {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        profile.decode(&[vec![0; 63]]),
        Err(RegisterDecodeError::BlockLength {
            block: 0,
            expected: 64,
            got: 63
        })
    );
    let float = profile_f32();
    let nan = f32::NAN.to_bits();
    let mut regs = vec![0u16; 40];
    (regs[1], regs[2]) = ((nan >> 16) as u16, nan as u16);
    assert_eq!(
        float.decode(&[regs]),
        Err(RegisterDecodeError::NotFinite {
            field: "fields.current_a".to_owned()
        })
    );
}

pub(super) fn profile_f32() -> Profile {
    profile(&minimal("{ block = 0, offset = 1, type = \"f32\" }")).unwrap()
}
