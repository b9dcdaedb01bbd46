//! Every way a profile is rejected names the key and why.

use super::tests::{minimal, profile};
use super::*;

const CURRENT: &str = "{ block = 0, offset = 1, type = \"i16\" }";

/// The path of the `Invalid` error of `text` appended to a one-block
/// profile, panicking on any other outcome.
fn invalid_path(extra: &str) -> String {
    match profile(extra) {
        Err(ProfileError::Invalid {
            path,
            reason,
            origin,
        }) => {
            assert_eq!(origin, "test.toml");
            assert!(!reason.is_empty());
            path
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn with_current(current: &str) -> String {
    invalid_path(&minimal(current))
}

#[test]
fn offsets_outside_their_block() {
    assert_eq!(
        with_current("{ block = 0, offset = 40, type = \"i16\" }"),
        "fields.current_a.offset"
    );
    assert_eq!(
        with_current("{ block = 0, offset = 39, type = \"i32\" }"),
        "fields.current_a.offset"
    );
    assert_eq!(
        with_current("{ block = 1, offset = 0, type = \"i16\" }"),
        "fields.current_a.block"
    );
    assert_eq!(
        with_current(
            "{ block = 0, offset = 1, type = \"i16\", scale_from = { block = 0, offset = 40 } }"
        ),
        "fields.current_a.scale_from.offset"
    );
    let cells = minimal(CURRENT).replace(
        "offset = 10\ntype = \"u16\"\ncount = 1",
        "offset = 10\ntype = \"u16\"\ncount = 31",
    );
    assert_eq!(invalid_path(&cells), "cells.offset");
    let stride = minimal(CURRENT).replace(
        "offset = 10\ntype = \"u16\"\ncount = 1",
        "offset = 10\ntype = \"u16\"\nstride = 15\ncount = 3",
    );
    assert_eq!(invalid_path(&stride), "cells.offset");
}

#[test]
fn block_sizes_and_functions() {
    let block = |function: u8, start: u32, count: u32| {
        let text = format!(
            "name = \"t\"\n[[blocks]]\nfunction = {function}\nstart = {start}\ncount = {count}\n{}",
            minimal(CURRENT)
        );
        match Profile::from_toml(&text, "b.toml") {
            Err(ProfileError::Invalid { path, .. }) => path,
            other => format!("{other:?}"),
        }
    };
    assert_eq!(block(3, 0, 126), "blocks[0].count");
    assert_eq!(block(3, 0, 0), "blocks[0].count");
    assert_eq!(block(6, 0, 40), "blocks[0].function");
    assert_eq!(block(3, 65500, 40), "blocks[0].count");
    assert!(block(4, 0, 125).starts_with("Ok("));
    let none = format!("name = \"t\"\nblocks = []\n{}", minimal(CURRENT));
    assert!(
        matches!(Profile::from_toml(&none, "n"), Err(ProfileError::Invalid { path, .. }) if path == "blocks")
    );
}

#[test]
fn array_counts() {
    let cells = |spec: &str| {
        invalid_path(&minimal(CURRENT).replace(
            "type = \"u16\"\ncount = 1\n[temperatures]",
            &format!("type = \"u16\"\n{spec}\n[temperatures]"),
        ))
    };
    assert_eq!(cells("count = 0"), "cells.count");
    assert_eq!(cells("count = 33"), "cells.count");
    assert_eq!(
        cells("count_from = { block = 0, offset = 4 }\nmax_count = 33"),
        "cells.max_count"
    );
    assert_eq!(
        cells("count_from = { block = 0, offset = 4 }\nmax_count = 0"),
        "cells.max_count"
    );
    assert_eq!(
        cells("count = 2\ncount_from = { block = 0, offset = 4 }"),
        "cells.count_from"
    );
    assert_eq!(cells("count = 2\nmax_count = 4"), "cells.max_count");
    assert_eq!(
        cells("count_from = { block = 0, offset = 40 }"),
        "cells.count_from.offset"
    );
    assert_eq!(
        cells("count_from = { block = 0, offset = 4, type = \"f32\" }"),
        "cells.count_from.type"
    );
    assert_eq!(cells("stride = 0\ncount = 2"), "cells.stride");
    assert_eq!(cells(""), "cells.count");
    let temps = minimal(CURRENT).replace(
        "offset = 20\ntype = \"u16\"\ncount = 1",
        "offset = 20\ntype = \"u16\"\ncount = 17",
    );
    assert_eq!(invalid_path(&temps), "temperatures.count");
}

#[test]
fn alarms() {
    let alarm = |bits: &str| {
        invalid_path(
            &(minimal(CURRENT)
                + &format!("[[alarms]]\nblock = 0\noffset = 8\ntype = \"u16\"\nbits = {bits}\n")),
        )
    };
    assert_eq!(alarm("{ 0 = \"cell_overvoltage\" }"), "alarms[0].bits.0");
    assert_eq!(alarm("{ 16 = \"bms_fault\" }"), "alarms[0].bits.16");
    assert_eq!(alarm("{ x = \"bms_fault\" }"), "alarms[0].bits.x");
    assert_eq!(alarm("{}"), "alarms[0].bits");
    let err = profile(
        &(minimal(CURRENT)
            + "[[alarms]]\nblock = 0\noffset = 8\ntype = \"u16\"\nbits = { 2 = \"fire\" }\n"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown alarm \"fire\""), "{err}");
    let float = minimal(CURRENT)
        + "[[alarms]]\nblock = 0\noffset = 8\ntype = \"f32\"\nbits = { 0 = \"bms_fault\" }\n";
    assert_eq!(invalid_path(&float), "alarms[0].type");
}

#[test]
fn field_types_fit_their_use() {
    assert_eq!(
        with_current("{ block = 0, offset = 1, type = \"bits\", bit = 0 }"),
        "fields.current_a.type"
    );
    assert_eq!(
        with_current("{ block = 0, offset = 1, type = \"i16\", bit = 0 }"),
        "fields.current_a.bit"
    );
    assert_eq!(
        with_current("{ block = 0, offset = 1, type = \"i16\", scale = 0.0 }"),
        "fields.current_a.scale"
    );
    assert_eq!(
        with_current("{ block = 0, offset = 1, type = \"i16\", scale = 1.0, scale_from = { block = 0, offset = 3 } }"),
        "fields.current_a.scale_from"
    );
    let flag = |spec: &str| {
        invalid_path(
            &minimal(CURRENT).replace("soc_pct", &format!("charge_enabled = {spec}\nsoc_pct")),
        )
    };
    assert_eq!(
        flag("{ block = 0, offset = 30, type = \"bits\" }"),
        "fields.charge_enabled.bit"
    );
    assert_eq!(
        flag("{ block = 0, offset = 30, type = \"bits\", bit = 16 }"),
        "fields.charge_enabled.bit"
    );
    assert_eq!(
        flag("{ block = 0, offset = 30, type = \"f32\" }"),
        "fields.charge_enabled.type"
    );
    assert_eq!(
        flag("{ block = 0, offset = 30, type = \"u16\", scale = 2.0 }"),
        "fields.charge_enabled"
    );
    let mask = minimal(CURRENT).replace(
        "soc_pct",
        "balancing_mask = { block = 0, offset = 30, type = \"u32\", invert = true }\nsoc_pct",
    );
    assert_eq!(invalid_path(&mask), "fields.balancing_mask");
    let serial = minimal(CURRENT) + "[serial_number]\nblock = 0\noffset = 30\ntype = \"ascii\"\n";
    assert_eq!(invalid_path(&serial), "serial_number.count");
    let serial = minimal(CURRENT)
        + "[serial_number]\nblock = 0\noffset = 30\ntype = \"ascii\"\ncount = 11\n";
    assert_eq!(invalid_path(&serial), "serial_number.offset");
}

#[test]
fn settings() {
    let setting = |body: &str| invalid_path(&(minimal(CURRENT) + "[[settings]]\n" + body));
    let base = "name = \"limit_a\"\nregister = 100\ntype = \"u16\"\nscale = 0.1\n";
    assert_eq!(
        setting(&format!("{base}min = 10.0\nmax = 5.0\n")),
        "settings[0].min"
    );
    assert_eq!(
        setting(&format!("{base}min = 5.0\nmax = 5.0\n")),
        "settings[0].min"
    );
    assert_eq!(
        setting(&format!("{base}min = 0.0\nmax = 7000.0\n")),
        "settings[0].max"
    );
    assert_eq!(
        setting(&format!("{base}min = -1.0\nmax = 5.0\n")),
        "settings[0].min"
    );
    assert_eq!(
        setting("name = \"Bad Name\"\nregister = 1\ntype = \"u16\"\nmin = 0.0\nmax = 1.0\n"),
        "settings[0].name"
    );
    assert_eq!(
        setting("name = \"x\"\nregister = 1\ntype = \"bits\"\nmin = 0.0\nmax = 1.0\n"),
        "settings[0].type"
    );
    assert_eq!(
        setting("name = \"x\"\nregister = 65535\ntype = \"u32\"\nmin = 0.0\nmax = 1.0\n"),
        "settings[0].register"
    );
    let twice = format!("{base}min = 0.0\nmax = 5.0\n[[settings]]\n{base}min = 0.0\nmax = 5.0\n");
    assert_eq!(setting(&twice), "settings[1].name");
}

#[test]
fn setting_values_out_of_bounds_or_type() {
    let text = minimal(CURRENT)
        + "[[settings]]\nname = \"v\"\nregister = 1\ntype = \"i16\"\nmin = -10.0\nmax = 10.0\n";
    let profile = profile(&text).unwrap();
    let v = profile.setting("v").unwrap();
    assert!(matches!(
        v.encode(10.5),
        Err(SettingValueError::OutOfBounds { .. })
    ));
    assert!(matches!(
        v.encode(-10.01),
        Err(SettingValueError::OutOfBounds { .. })
    ));
    assert!(matches!(
        v.encode(f64::NAN),
        Err(SettingValueError::NotFinite { .. })
    ));
    assert_eq!(v.encode(-3.4), Ok(vec![(-3i16) as u16]));
    assert_eq!(
        v.encode(-3.5),
        Ok(vec![(-4i16) as u16]),
        "rounds to nearest, half away from zero"
    );
    assert!(matches!(
        v.decode(&[1, 2]),
        Err(SettingValueError::RegisterCount {
            expected: 1,
            got: 2,
            ..
        })
    ));
    // Validation keeps min and max encodable, so every value between them
    // fits; a hand-built setting shows the check itself.
    let wide = WritableSetting {
        max: 1e6,
        ..v.clone()
    };
    assert!(matches!(
        wide.encode(40000.0),
        Err(SettingValueError::DoesNotFit { ty: "i16", .. })
    ));
    let tiny = WritableSetting {
        ty: super::value::NumberType::F32,
        scale: 1e-40,
        ..wide
    };
    assert!(matches!(
        tiny.encode(1.0),
        Err(SettingValueError::DoesNotFit { ty: "f32", .. })
    ));
}

#[test]
fn unknown_and_missing_keys_name_the_key_and_line() {
    let text = format!(
        "name = \"t\"\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 40\n{}",
        minimal(CURRENT)
    )
    .replace("[cells]\n", "[cells]\nbogus_key = 1\n");
    let line = text
        .lines()
        .position(|l| l.starts_with("bogus_key"))
        .unwrap()
        + 1;
    match Profile::from_toml(&text, "u.toml") {
        Err(err @ ProfileError::Syntax { .. }) => {
            let ProfileError::Syntax {
                line: got,
                ref message,
                ..
            } = err
            else {
                unreachable!()
            };
            assert_eq!(got, line, "{err}");
            assert!(message.contains("bogus_key"), "{err}");
            assert!(
                err.to_string().starts_with(&format!("u.toml: line {line}")),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = Profile::from_toml(
        "name = \"t\"\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 4\n",
        "m.toml",
    )
    .unwrap_err();
    assert!(
        matches!(&err, ProfileError::Syntax { message, .. } if message.contains("fields")),
        "{err}"
    );
    let err = Profile::from_toml("name = \n", "s.toml").unwrap_err();
    assert!(matches!(err, ProfileError::Syntax { line: 1, .. }), "{err}");
    let err = profile(&minimal("{ block = 0, offset = 1, type = \"i64\" }")).unwrap_err();
    assert!(
        matches!(&err, ProfileError::Syntax { message, .. } if message.contains("i64")),
        "{err}"
    );
}

#[test]
fn load_reports_unreadable_files() {
    let err = Profile::load(std::path::Path::new("/nonexistent/profile.toml")).unwrap_err();
    assert!(
        matches!(&err, ProfileError::Read { origin, .. } if origin == "/nonexistent/profile.toml"),
        "{err}"
    );
}

#[test]
fn two_settings_on_one_register_are_refused() {
    let setting = |name: &str, register: u16, ty: &str| {
        format!(
            "[[settings]]\nname = \"{name}\"\nregister = {register}\ntype = \"{ty}\"\nmin = 0.0\nmax = 5.0\n"
        )
    };
    let same = minimal(CURRENT) + &setting("a", 100, "u16") + &setting("b", 100, "u16");
    assert_eq!(invalid_path(&same), "settings[1].register");
    // A u32 at 99 covers 99 and 100.
    let wide = minimal(CURRENT) + &setting("a", 99, "u32") + &setting("b", 100, "u16");
    assert_eq!(invalid_path(&wide), "settings[1].register");
    let apart = minimal(CURRENT) + &setting("a", 98, "u32") + &setting("b", 100, "u16");
    assert!(profile(&apart).is_ok());
}

#[test]
fn overlapping_arrays_are_refused() {
    // Temperatures from offset 12 while 4 cells read 10..=13.
    let cells = |text: String| {
        text.replace(
            "offset = 10\ntype = \"u16\"\ncount = 1",
            "offset = 10\ntype = \"u16\"\ncount = 4",
        )
    };
    let overlapping = cells(minimal(CURRENT)).replace("offset = 20", "offset = 12");
    assert_eq!(invalid_path(&overlapping), "temperatures.offset");
    // Interleaved by stride, they share nothing: accepted.
    let interleaved = minimal(CURRENT)
        .replace(
            "offset = 10\ntype = \"u16\"\ncount = 1",
            "offset = 10\ntype = \"u16\"\nstride = 2\ncount = 4",
        )
        .replace(
            "offset = 20\ntype = \"u16\"\ncount = 1",
            "offset = 11\ntype = \"u16\"\nstride = 2\ncount = 4",
        );
    assert!(profile(&interleaved).is_ok(), "{:?}", profile(&interleaved));
    // Two blocks over one register range count as one register.
    let two_blocks = cells(minimal(CURRENT)).replace(
        "[temperatures]\nblock = 0\noffset = 20",
        "[[blocks]]\nfunction = 3\nstart = 10\ncount = 5\n[temperatures]\nblock = 1\noffset = 3",
    );
    assert_eq!(invalid_path(&two_blocks), "temperatures.offset");
}

#[test]
fn ratings_and_capacity_are_optional_and_must_be_positive() {
    let with = |top: &str| {
        let text = format!(
            "name = \"t\"\n{top}\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 40\n{}",
            minimal(CURRENT)
        );
        Profile::from_toml(&text, "test.toml")
    };
    let rated = with("max_charge_a = 100.0\nmax_discharge_a = 150.0\ncapacity_ah = 280.0").unwrap();
    assert_eq!(
        (rated.max_charge_a, rated.max_discharge_a, rated.capacity_ah),
        (Some(100.0), Some(150.0), Some(280.0))
    );
    let unrated = with("").unwrap();
    assert_eq!(
        (
            unrated.max_charge_a,
            unrated.max_discharge_a,
            unrated.capacity_ah
        ),
        (None, None, None)
    );
    for (top, path) in [
        ("max_charge_a = 0.0", "max_charge_a"),
        ("max_discharge_a = -5.0", "max_discharge_a"),
        ("capacity_ah = nan", "capacity_ah"),
        ("max_charge_a = 1e9", "max_charge_a"),
    ] {
        match with(top) {
            Err(ProfileError::Invalid { path: got, .. }) => assert_eq!(got, path, "{top}"),
            other => panic!("{top}: {other:?}"),
        }
    }
}
