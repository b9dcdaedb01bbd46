//! candump logs (`-l` log form and the default form) and their replay
//! through the Pylontech decoder. A frame read from a log prints in the log
//! form and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packgate_drivers::can::candump::{decode_line, decode_log, replay};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for entry in decode_log(&text).flatten() {
        if let Some(t) = entry.time_s {
            assert!(t.is_finite());
        }
        assert!(!entry.interface.is_empty());
        // The interface is any token (even `#can0` after a timestamp), so
        // the frame is read back on a plain one.
        let line = format!("can0 {}", entry.frame);
        match decode_line(&line, 1) {
            Some(Ok(back)) => assert_eq!(back.frame, entry.frame, "{line}"),
            other => panic!("{line:?} reads back as {other:?}"),
        }
    }
    for line in replay(&text) {
        assert!(!line.is_empty());
    }
});
