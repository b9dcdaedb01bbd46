//! `packgate check-config` and `packgate run` on configurations and
//! arguments that parse but cannot work: refused with the key and its line,
//! secrets never printed, a closed pipe ended quietly. The example
//! configuration is accepted, and a configuration or a store this user
//! cannot read is said as such.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn packgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_packgate"))
}

/// `packgate check-config` on `text`, written to a file in `dir` whose
/// `data_dir` is `dir`.
fn check_config(dir: &Path, text: &str) -> Output {
    let path = dir.join("packgate.toml");
    let data_dir = format!("data_dir = {:?}\n", dir.display().to_string());
    std::fs::write(&path, format!("{data_dir}{text}")).unwrap();
    packgate().arg("check-config").arg(&path).output().unwrap()
}

/// Asserts `text` is refused with exit code 1, naming `key` on `line` of
/// the file (counting the `data_dir` line `check_config` puts first) and
/// saying `why`.
fn refused(text: &str, key: &str, line: usize, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(dir.path(), text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}\n{stderr}");
    assert!(
        stderr.contains(&format!("line {line}: {key}: ")),
        "expected {key} on line {line}:\n{stderr}"
    );
    assert!(stderr.contains(why), "expected {why:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_never_prints_cloud_secrets() {
    for (auth, secret) in [
        ("user = \"gw\"\npassword = \"pw-4f1c9e\"\n", "pw-4f1c9e"),
        ("token = \"tok-77a0b3\"\n", "tok-77a0b3"),
        (
            "nkey_seed = \"SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\"\n",
            "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = check_config(
            dir.path(),
            &format!(
                "[cloud]\nenabled = true\ngateway_id = \"site-1\"\n\
                 urls = [\"tls://cloud.example:4222\"]\n{auth}"
            ),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains("valid, 0 packs"), "{stdout}");
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stderr.contains(secret), "{stderr}");
        let key = auth.lines().last().unwrap().split(' ').next().unwrap();
        assert!(stdout.contains(&format!("{key} = \"***\"")), "{stdout}");
    }
}

#[test]
fn check_config_never_prints_a_password_or_token_in_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        "[broker]\nurl = \"nats://collect:pw-5be2d1@127.0.0.1:4222\"\n\
         [cloud]\nenabled = true\ngateway_id = \"site-1\"\n\
         urls = [\"tls://tok-90c4aa@cloud.example:4222\"]\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for secret in ["pw-5be2d1", "tok-90c4aa"] {
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
    assert!(
        stdout.contains("url = \"nats://collect:***@127.0.0.1:4222\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"tls://***:***@cloud.example:4222\""),
        "{stdout}"
    );
}

#[test]
fn check_config_refuses_values_that_would_overflow_or_spin() {
    refused(
        "[collect]\ninflight_max = 18446744073709551615\n",
        "collect.inflight_max",
        3,
        "must be 1 to 65536",
    );
    let can = "[[buses]]\nname = \"can\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n\
               [[packs]]\nid = \"lv\"\ndriver = \"can\"\nbus = \"can\"\n";
    refused(
        &format!("[collect]\npoll_interval_ms = 9000000000000000000\n{can}"),
        "collect.poll_interval_ms",
        3,
        "must be 10 to 86400000",
    );
    // 9e18 is a float where an integer goes: a parse error at its line.
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        &format!("[collect]\npoll_interval_ms = 9e18\n{can}"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("poll_interval_ms"),
        "{stderr}"
    );
    refused(
        "[collect]\npoll_interval_ms = 0\n",
        "collect.poll_interval_ms",
        3,
        "for `packgate bench` only",
    );
}

#[test]
fn check_config_refuses_bus_conflicts_and_bad_addresses() {
    let bus = |name: &str, kind: &str, key: &str, value: &str| {
        format!("[[buses]]\nname = \"{name}\"\nkind = \"{kind}\"\n{key} = \"{value}\"\n")
    };
    refused(
        &(bus("a", "modbus_rtu", "port", "/dev/ttyUSB0")
            + &bus("b", "modbus_rtu", "port", "/dev/ttyUSB0")),
        "buses[1].port",
        9,
        "is already buses[0] (\"a\")",
    );
    refused(
        &bus("t", "modbus_tcp", "address", "10.0.0.5"),
        "buses[0].address",
        5,
        "is not host:port",
    );
    refused(
        &bus("t", "modbus_tcp", "address", "10.0.0.5:99999"),
        "buses[0].address",
        5,
        "no port 1 to 65535",
    );
    refused(
        &bus("", "modbus_tcp", "address", "10.0.0.5:502"),
        "buses[0].name",
        3,
        "a bus needs a name",
    );
}

#[test]
fn check_config_refuses_streams_larger_than_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let total = packgate::platform::disk_space(dir.path())
        .unwrap()
        .total_bytes;
    // Three streams of 1 TiB each (the largest one stream may be).
    let tib = 1u64 << 40;
    if total >= 3 * tib {
        return;
    }
    refused(
        &format!(
            "[streams.samples]\nmax_bytes = {tib}\nmax_age_s = 0\n\
             [streams.events]\nmax_bytes = {tib}\nmax_age_s = 0\n\
             [streams.metrics]\nmax_bytes = {tib}\nmax_age_s = 0\n"
        ),
        "streams.samples.max_bytes",
        3,
        "more than the whole filesystem of data_dir",
    );
}

#[test]
fn check_config_refuses_a_profile_with_conflicting_registers() {
    let dir = tempfile::tempdir().unwrap();
    let base = packgate_drivers::profile::Profile::builtin_source("packgate-sim").unwrap();
    let setting = |name: &str| {
        format!(
            "\n[[settings]]\nname = \"{name}\"\nregister = 900\ntype = \"u16\"\n\
             min = 0.0\nmax = 5.0\n"
        )
    };
    let profile = dir.path().join("two-settings.toml");
    std::fs::write(&profile, format!("{base}{}{}", setting("a"), setting("b"))).unwrap();
    refused(
        &format!(
            "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n\
             [[packs]]\nid = \"p\"\ndriver = \"modbus\"\nbus = \"rs485\"\nunit_id = 1\n\
             profile = {:?}\n",
            profile.display().to_string()
        ),
        "packs[0].profile",
        11,
        "holding register 900 is written by setting \"a\" too",
    );
}

#[test]
fn check_config_ends_quietly_when_its_reader_has_gone() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/packgate.example.toml"
    );
    // A socket whose other end is closed: every write fails with EPIPE,
    // as `| head -1` makes them once head has exited.
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(ours);
    let out = packgate()
        .args(["check-config", example])
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Quietly: no panic and no complaint about the pipe. (A warning about
    // the machine, such as streams larger than its free disk, may stand.)
    for noise in ["panicked", "Broken pipe", "os error 32", "error"] {
        assert!(!stderr.contains(noise), "{stderr}");
    }
}

#[test]
fn sim_has_a_documented_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let out = packgate()
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1000000000",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A usage error, not an abort.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1000000000 simulated packs; one gateway polls at most 1000"),
        "{stderr}"
    );
    let out = packgate()
        .args(["bench", "--packs", "1000000000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("one gateway polls at most 1000"),
        "{stderr}"
    );
    // Configured and simulated packs count together.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[[packs]]\nid = \"p\"\ndriver = \"sim\"\n").unwrap();
    let out = packgate()
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1000",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "--sim 1000: at most 1000 packs, configured and simulated together (1 configured)"
        ),
        "{stderr}"
    );
}

/// A gateway or worker whose configuration cannot be used exits with
/// `EX_CONFIG` (78), which the unit does not restart on; `check-config`
/// answers 1, as a check does.
#[test]
fn an_unusable_configuration_ends_a_worker_with_ex_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("packgate.toml");
    std::fs::write(&config, "[collect]\npoll_interval_ms = 1000\nbogus = 1\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for (command, file) in [("run", &config), ("collect", &config), ("run", &missing)] {
        let out = packgate()
            .args([command, "--config"])
            .arg(file)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{command}: {stderr}");
    }
    let out = packgate()
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A configuration this user may not read is said as such, with what to
/// do, not as a missing file or a parse error.
#[test]
fn an_unreadable_configuration_says_who_may_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("packgate.toml");
    std::fs::write(&config, "[collect]\npoll_interval_ms = 1000\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        // Root reads anything: as nobody, with no groups.
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_packgate"));
        command
    } else {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o000)).unwrap();
        packgate()
    };
    let out = command
        .args(["status", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this user may not read the configuration")
            && stderr.contains("sudo adduser $USER packgate")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_example_and_names_a_bad_key() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/packgate.example.toml"
    );
    let out = packgate().args(["check-config", example]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid, 1 packs"), "{stdout}");
    assert!(stdout.contains("poll_interval_ms = 1000"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[collect]\npoll_interval_ms = 1000\nrequest_timout_ms = 5\n",
    )
    .unwrap();
    let out = packgate().arg("check-config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("request_timout_ms") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn a_store_that_cannot_be_read_is_said_so_not_called_missing() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    // A data directory that is a file: every store under it is unreadable
    // (ENOTDIR), though `Path::exists` calls it absent.
    let data_dir = dir.path().join("data");
    std::fs::write(&data_dir, "").unwrap();
    let out = packgate()
        .args(["query", "samples", "--pack", "p", "--data-dir"])
        .arg(&data_dir)
        .env("PACKGATE_CONFIG", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read the sample store") && stderr.contains("Not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("does not exist"), "{stderr}");

    let out = packgate()
        .args(["status", "--nats-url", "nats://127.0.0.1:1", "--data-dir"])
        .arg(&data_dir)
        .env("PACKGATE_CONFIG", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "cannot read the monitor database",
        "unknown, cannot read the audit store",
        "dead letters: unknown, cannot read the sample store",
    ] {
        assert!(stdout.contains(needle), "{needle}:\n{stdout}");
    }
    assert!(!stdout.contains("does not exist"), "{stdout}");

    // What an operator outside the service's group meets. (Root reads
    // whatever the modes say, so this part needs another user.)
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    if std::fs::metadata(&probe).unwrap().uid() == 0 {
        return;
    }
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    packgate::store::SampleStore::open(&private.join("samples.db")).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = packgate()
        .args(["query", "samples", "--pack", "p", "--data-dir"])
        .arg(&private)
        .env("PACKGATE_CONFIG", "")
        .output()
        .unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
}
