use super::super::Config;
use super::*;

const BUSES: &str =
    "[[buses]]\nname = \"tcp\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.5:502\"\n\
     [[buses]]\nname = \"canable\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n";

fn parse(pack: &str) -> Result<Config, String> {
    let text = format!("{BUSES}[[packs]]\nid = \"s1\"\ndriver = \"sunspec\"\n{pack}");
    Config::from_toml_str(&text, "x.toml").map_err(|e| e.to_string())
}

#[test]
fn a_sunspec_pack_reads_with_its_defaults() {
    let config = parse("bus = \"tcp\"\nunit_id = 3\n").unwrap();
    let expected = PackConfig::sunspec(PackId::new("s1").unwrap(), "tcp", 3);
    assert_eq!(config.packs, vec![expected]);
    let DriverConfig::Sunspec(s) = &config.packs[0].driver else {
        panic!("not sunspec");
    };
    assert_eq!(s.bases, vec![40000, 0, 50000]);
    assert!(!s.invert_current);
    let config = parse("bus = \"tcp\"\nunit_id = 3\nbases = [0]\ninvert_current = true\n").unwrap();
    let DriverConfig::Sunspec(s) = &config.packs[0].driver else {
        panic!("not sunspec");
    };
    assert_eq!((s.bases.as_slice(), s.invert_current), (&[0u16][..], true));
}

#[test]
fn bad_sunspec_packs_are_refused_by_key() {
    let e = parse("bus = \"tcp\"\nunit_id = 3\nbases = [40001]\n").unwrap_err();
    assert!(e.contains("packs[0].bases") && e.contains("40001"), "{e}");
    let e = parse("bus = \"tcp\"\nunit_id = 3\nbases = []\n").unwrap_err();
    assert!(e.contains("packs[0].bases"), "{e}");
    let e = parse("bus = \"tcp\"\nunit_id = 3\nbases = [0, 0]\n").unwrap_err();
    assert!(e.contains("twice"), "{e}");
    let e = parse("bus = \"canable\"\nunit_id = 3\n").unwrap_err();
    assert!(e.contains("driver = \"sunspec\" needs a modbus"), "{e}");
    let e = parse("bus = \"tcp\"\nunit_id = 0\n").unwrap_err();
    assert!(e.contains("packs[0].unit_id"), "{e}");
    let e = parse("bus = \"tcp\"\nunit_id = 3\nprofile = \"x\"\n").unwrap_err();
    assert!(e.contains("profile"), "{e}");
}
