use super::*;
use packgate_protocol::{CommandId, CommandOrigin, SettingName};
use packgate_sim::SimPackConfig;

const NOW: i64 = 1_700_000_000_000;

fn table() -> PackTable {
    let modbus = PackConfig::modbus(PackId::new("jk").unwrap(), "rs485", 1, "jk-bms-pb");
    let can = PackConfig::can(PackId::new("can").unwrap(), "can0", 16);
    let sim = PackConfig::sim(PackId::new("sim").unwrap(), SimPackConfig::default());
    pack_table(&[modbus, can, sim]).unwrap()
}

fn policy() -> Policy {
    let mut site_limits = BTreeMap::new();
    site_limits.insert(
        "charge_current_limit_a".to_owned(),
        SiteLimit {
            min: 0.0,
            max: 80.0,
        },
    );
    Policy {
        site_limits,
        max_ttl_ms: 3_600_000,
        max_skew_ms: 5_000,
        banks: BankTable::new(),
    }
}

fn command(pack: &str, setting: &str, value: f64) -> Command {
    Command {
        id: CommandId("c-1".into()),
        pack_id: PackId::new(pack).unwrap(),
        setting: SettingName(setting.into()),
        value,
        origin: CommandOrigin::Local,
        issued_at_ms: NOW,
        expires_at_ms: NOW + 30_000,
    }
}

fn check(command: &Command) -> Result<ValidatedSetting, Rejection> {
    validate(command, NOW, &table(), &policy())
}

#[test]
fn the_table_has_each_drivers_settings() {
    let table = table();
    let names = |pack: &str| -> Vec<String> {
        table[&PackId::new(pack).unwrap()]
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(
        names("sim"),
        ["charge_current_limit_a", "discharge_current_limit_a"]
    );
    assert!(names("can").is_empty());
    // This profile offers no writes (its map is unverified).
    assert!(names("jk").is_empty());
}

#[test]
fn a_missing_profile_is_an_error() {
    let pack = PackConfig::modbus(
        PackId::new("x").unwrap(),
        "rs485",
        1,
        "/nowhere/profile.toml",
    );
    assert!(pack_table(&[pack]).is_err());
}

#[test]
fn a_valid_command_gives_the_setting() {
    let ok = check(&command("sim", "charge_current_limit_a", 50.0)).unwrap();
    assert_eq!(ok.name.0, "charge_current_limit_a");
    assert_eq!(ok.value, 50.0);
    // Bounds are inclusive; a setting without a site limit has the
    // profile's alone.
    check(&command("sim", "charge_current_limit_a", 80.0)).unwrap();
    check(&command("sim", "discharge_current_limit_a", 2000.0)).unwrap();
}

#[test]
fn unknown_packs_and_unwritable_settings_are_named() {
    let err = check(&command("ghost", "charge_current_limit_a", 1.0)).unwrap_err();
    assert_eq!(err, Rejection::UnknownPack(PackId::new("ghost").unwrap()));
    assert!(err.to_string().contains("ghost"));
    let err = check(&command("sim", "soc_pct", 1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("soc_pct"), "{err}");
    assert!(err.contains("charge_current_limit_a"), "{err}");
    assert!(err.contains("discharge_current_limit_a"), "{err}");
    let err = check(&command("can", "charge_current_limit_a", 1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("writable: none"), "{err}");
}

#[test]
fn values_outside_the_profile_or_site_are_refused() {
    for value in [f64::NAN, f64::INFINITY] {
        let err = check(&command("sim", "charge_current_limit_a", value)).unwrap_err();
        assert!(matches!(err, Rejection::NotFinite(..)), "{err}");
    }
    let err = check(&command("sim", "discharge_current_limit_a", -1.0)).unwrap_err();
    assert!(
        matches!(err, Rejection::OutOfProfileBounds { min: 0.0, .. }),
        "{err}"
    );
    let err = check(&command("sim", "discharge_current_limit_a", 2000.5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("profile's bounds 0 to 2000 A"), "{err}");
    let err = check(&command("sim", "charge_current_limit_a", 80.5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("site limit 0 to 80 A"), "{err}");
}

#[test]
fn the_write_check_wants_the_subjects_pack_and_the_same_rules() {
    let check = WriteCheck::new(table(), policy());
    let ok = command("sim", "charge_current_limit_a", 50.0);
    let sim = PackId::new("sim").unwrap();
    assert_eq!(check.check(&sim, &ok, NOW).unwrap().value, 50.0);
    let other = PackId::new("jk").unwrap();
    let err = check.check(&other, &ok, NOW).unwrap_err();
    assert!(matches!(err, Rejection::WrongPack { .. }), "{err}");
    assert!(err.to_string().contains("pack jk"), "{err}");
    let over = command("sim", "charge_current_limit_a", 150.0);
    assert!(matches!(
        check.check(&sim, &over, NOW).unwrap_err(),
        Rejection::OutsideSiteLimit { .. }
    ));
    // The default refuses everything.
    assert!(WriteCheck::default().check(&sim, &ok, NOW).is_err());
}

#[test]
fn time_rules() {
    let mut c = command("sim", "charge_current_limit_a", 10.0);
    c.expires_at_ms = NOW;
    assert_eq!(check(&c).unwrap_err(), Rejection::Expired { ago_ms: 0 });
    c.expires_at_ms = NOW - 10;
    assert!(check(&c).unwrap_err().to_string().contains("expired"));
    c.expires_at_ms = NOW + 3_600_001;
    assert!(matches!(
        check(&c).unwrap_err(),
        Rejection::ExpiryTooFar { .. }
    ));
    c.expires_at_ms = NOW + 3_600_000;
    check(&c).unwrap();
    c.issued_at_ms = NOW + 5_000;
    check(&c).unwrap();
    c.issued_at_ms = NOW + 5_001;
    assert!(matches!(
        check(&c).unwrap_err(),
        Rejection::IssuedInFuture {
            ahead_ms: 5_001,
            ..
        }
    ));
    // Extreme clocks do not overflow.
    c.issued_at_ms = i64::MIN;
    c.expires_at_ms = i64::MAX;
    assert!(check(&c).is_err());
    c.expires_at_ms = i64::MIN;
    assert!(check(&c).is_err());
}
