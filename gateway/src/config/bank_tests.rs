//! `[[banks]]`: what reads, what each pack brings, and each way a bank is
//! refused with the key at fault.

#![allow(clippy::unwrap_used)]

use super::super::Config;
use super::*;
use crate::config::InverterLinkKind;

/// Three simulated packs and a Modbus one whose profile has no ratings.
const PACKS: &str = "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n\
    [[packs]]\nid = \"a\"\ndriver = \"sim\"\n\
    [[packs]]\nid = \"b\"\ndriver = \"sim\"\n[packs.sim]\ncharge_current_limit_a = 50.0\ncapacity_ah = 200.0\nsoh_pct = 90.0\n\
    [[packs]]\nid = \"c\"\ndriver = \"sim\"\n\
    [[packs]]\nid = \"m\"\ndriver = \"modbus\"\nbus = \"rs485\"\nunit_id = 1\nprofile = \"jk-bms-pb\"\n";

fn parse(banks: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!("{PACKS}{banks}"), "x.toml").map_err(|e| e.to_string())
}

fn refused(banks: &str) -> String {
    match parse(banks) {
        Ok(config) => panic!("accepted: {:?}", config.banks),
        Err(e) => e,
    }
}

#[test]
fn a_bank_reads_with_the_lfp_defaults_and_its_packs_ratings() {
    let config = parse(
        "[[banks]]\nname = \"house\"\npacks = [\"a\", \"b\", \"c\"]\n\
         [banks.limits]\nsite_max_charge_a = 150.0\nmin_online_packs = 2\n",
    )
    .unwrap();
    let bank = &config.banks[0];
    assert_eq!(bank.name.as_str(), "house");
    assert_eq!(bank.limits.site_max_charge_a, 150.0);
    assert_eq!(bank.limits.min_online_packs, 2);
    assert_eq!(bank.limits.chemistry, crate::bank::ChemistryLimits::LFP);
    let ratings = bank.ratings(0, &config.packs).unwrap();
    let ids: Vec<&str> = ratings.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        ratings[1].1,
        PackRating {
            max_charge_a: 50.0,
            max_discharge_a: 100.0,
            capacity_ah: Some(180.0),
        }
    );
    // What check-config prints reads back as the same configuration.
    let printed = toml::to_string_pretty(&config).unwrap();
    assert!(printed.contains("[banks.limits.chemistry]"), "{printed}");
    assert_eq!(Config::from_toml_str(&printed, "printed").unwrap(), config);
}

#[test]
fn a_pack_without_ratings_in_its_profile_takes_the_banks_defaults() {
    let err = refused("[[banks]]\nname = \"rack\"\npacks = [\"m\"]\n");
    assert!(err.contains("banks[0].pack_max_charge_a"), "{err}");
    assert!(err.contains("pack m has no charge rating"), "{err}");
    let err = refused("[[banks]]\nname = \"rack\"\npacks = [\"m\"]\npack_max_charge_a = 90.0\n");
    assert!(err.contains("banks[0].pack_max_discharge_a"), "{err}");
    let config = parse(
        "[[banks]]\nname = \"rack\"\npacks = [\"m\", \"a\"]\npack_max_charge_a = 90.0\n\
         pack_max_discharge_a = 120.0\n",
    )
    .unwrap();
    let ratings = config.banks[0].ratings(0, &config.packs).unwrap();
    assert_eq!(
        ratings[0].1,
        PackRating {
            max_charge_a: 90.0,
            max_discharge_a: 120.0,
            capacity_ah: None,
        }
    );
    // The simulated pack keeps its own.
    assert_eq!(ratings[1].1.max_charge_a, 100.0);
    assert_eq!(ratings[1].1.capacity_ah, Some(100.0));
}

#[test]
fn unknown_packs_shared_packs_and_duplicate_names_are_refused_by_key() {
    let err = refused("[[banks]]\nname = \"house\"\npacks = [\"a\", \"zz\"]\n");
    assert!(
        err.contains("banks[0].packs: no pack zz in [[packs]]"),
        "{err}"
    );
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\", \"b\"]\n\
         [[banks]]\nname = \"two\"\npacks = [\"c\", \"b\"]\n",
    );
    assert!(err.contains("banks[1].packs"), "{err}");
    assert!(err.contains("pack b is already in bank one"), "{err}");
    let err = refused("[[banks]]\nname = \"one\"\npacks = [\"a\", \"a\"]\n");
    assert!(err.contains("pack a is listed twice"), "{err}");
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\"]\n[[banks]]\nname = \"one\"\npacks = [\"b\"]\n",
    );
    assert!(
        err.contains("banks[1].name: bank name one is used twice"),
        "{err}"
    );
    let err = refused("[[banks]]\nname = \"one\"\npacks = []\n");
    assert!(
        err.contains("banks[0].packs: a bank holds at least one pack"),
        "{err}"
    );
    let err = refused("[[banks]]\nname = \"c\"\npacks = [\"a\"]\n");
    assert!(
        err.contains("banks[0].name: bank name c is also a pack's id"),
        "{err}"
    );
    let err = refused("[[banks]]\nname = \"a.b\"\npacks = [\"a\"]\n");
    assert!(err.contains("bank id \"a.b\" holds '.'"), "{err}");
}

#[test]
fn rules_that_cannot_work_name_their_key_and_line() {
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\"]\n[banks.limits.chemistry]\ncell_charge_taper_v = 3.7\n",
    );
    assert!(
        err.contains("banks[0].limits.chemistry.cell_charge_taper_v: cell_charge_taper_v (3.7) must be below cell_max_v"),
        "{err}"
    );
    assert!(err.contains("line 28"), "{err}");
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\"]\n[banks.limits]\nfloat_voltage_v = 60.0\n",
    );
    assert!(err.contains("banks[0].limits.float_voltage_v"), "{err}");
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\", \"b\"]\n[banks.limits]\nmin_online_packs = 3\n",
    );
    assert!(err.contains("banks[0].limits.min_online_packs"), "{err}");
    let err = refused("[[banks]]\nname = \"one\"\npacks = [\"a\"]\npack_capacity_ah = -1.0\n");
    assert!(err.contains("banks[0].pack_capacity_ah"), "{err}");
    let err = refused(
        "[[banks]]\nname = \"one\"\npacks = [\"a\"]\n[banks.limits]\nsite_max_charge = 5.0\n",
    );
    assert!(err.contains("unknown field `site_max_charge`"), "{err}");
}

#[test]
fn an_inverter_link_reads_with_its_defaults_and_is_refused_when_wrong() {
    let config = parse(
        "[[banks]]\nname = \"house\"\npacks = [\"a\"]\n\
         [banks.inverter]\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n",
    )
    .unwrap();
    let inverter = config.banks[0].inverter.as_ref().unwrap();
    assert_eq!(inverter, &InverterConfig::slcan("/dev/ttyACM0"));
    assert_eq!(inverter.bitrate_bps, 500_000);
    assert_eq!(inverter.send_interval_ms, 1000);
    assert_eq!(inverter.stop_after_s, 10.0);
    assert_eq!(inverter.name, "packgate");
    let printed = toml::to_string_pretty(&config).unwrap();
    assert_eq!(Config::from_toml_str(&printed, "printed").unwrap(), config);

    let socketcan = parse(
        "[[banks]]\nname = \"house\"\npacks = [\"a\"]\n\
         [banks.inverter]\nkind = \"socketcan\"\ninterface = \"can0\"\nstop_after_s = 5.0\n",
    )
    .unwrap();
    let inverter = socketcan.banks[0].inverter.as_ref().unwrap();
    assert_eq!(inverter.kind, InverterLinkKind::Socketcan);
    assert_eq!(inverter.interface.as_deref(), Some("can0"));

    let bank = "[[banks]]\nname = \"house\"\npacks = [\"a\"]\n[banks.inverter]\n";
    for (table, key) in [
        ("kind = \"slcan\"\n", "banks[0].inverter.port"),
        ("kind = \"socketcan\"\n", "banks[0].inverter.interface"),
        (
            "kind = \"slcan\"\nport = \"/dev/x\"\nbitrate_bps = 400000\n",
            "banks[0].inverter.bitrate_bps",
        ),
        (
            "kind = \"slcan\"\nport = \"/dev/x\"\nstop_after_s = 0.5\n",
            "banks[0].inverter.stop_after_s",
        ),
        (
            "kind = \"slcan\"\nport = \"/dev/x\"\nsend_interval_ms = 0\n",
            "banks[0].inverter.send_interval_ms",
        ),
        (
            "kind = \"slcan\"\nport = \"/dev/x\"\nname = \"far too long\"\n",
            "banks[0].inverter.name",
        ),
        (
            "kind = \"socketcan\"\ninterface = \"can0\"\nport = \"/dev/x\"\n",
            "banks[0].inverter.port",
        ),
    ] {
        let err = refused(&format!("{bank}{table}"));
        assert!(err.contains(key), "{table}: {err}");
    }
    let err = refused(&format!(
        "{bank}kind = \"slcan\"\nport = \"/dev/x\"\nbaud = 1\n"
    ));
    assert!(err.contains("baud"), "{err}");
}
