use super::*;

#[test]
fn one_line_per_interval_with_the_count_held_back() {
    let limiter = LogLimiter::unticked("test line", Duration::from_millis(200));
    assert_eq!(limiter.allow(), Some(0));
    for _ in 0..1_999 {
        assert_eq!(limiter.allow(), None);
    }
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(limiter.allow(), Some(1_999));
    assert_eq!(limiter.allow(), None);
}

#[test]
fn a_flood_that_stops_is_summed_up_once_its_interval_ends() {
    let limiter = LogLimiter::unticked("test line", Duration::from_millis(200));
    assert_eq!(limiter.flush(), None, "nothing yet");
    assert_eq!(limiter.allow(), Some(0));
    for _ in 0..1_999 {
        assert_eq!(limiter.allow(), None);
    }
    assert_eq!(limiter.flush(), None, "the interval has not ended");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(limiter.flush(), Some(1_999));
    assert_eq!(limiter.flush(), None, "reported once");
    // The summary closed the interval: the next line goes through, and
    // reports nothing already reported.
    assert_eq!(limiter.allow(), Some(0));
    assert_eq!(limiter.allow(), None);
}

#[test]
fn lines_and_summaries_together_count_every_message() {
    let limiter = LogLimiter::unticked("test line", Duration::from_millis(20));
    let mut reported = 0;
    let mut written = 0;
    for n in 0..3_000 {
        if let Some(held_back) = limiter.allow() {
            reported += 1 + held_back;
            written += 1;
        }
        if n % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
            if let Some(held_back) = limiter.flush() {
                reported += held_back;
                written += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    if let Some(held_back) = limiter.flush() {
        reported += held_back;
        written += 1;
    }
    assert_eq!(reported, 3_000);
    assert!(written < 100, "{written} lines for 3,000 messages");
}

#[test]
fn the_shared_ticker_writes_the_summary_without_another_line() {
    let limiter = LogLimiter::named("ticked line", Duration::from_millis(100));
    assert_eq!(limiter.allow(), Some(0));
    for _ in 0..5 {
        assert_eq!(limiter.allow(), None);
    }
    // The ticker reports the five and closes the interval: nothing is
    // left for the next line, which goes through at once.
    std::thread::sleep(TICK * 3);
    assert_eq!(limiter.flush(), None, "already reported");
    assert_eq!(limiter.allow(), Some(0));
}

#[test]
fn a_dropped_limiter_is_forgotten() {
    let limiter = LogLimiter::named("dropped line", Duration::from_secs(3_600));
    assert_eq!(limiter.allow(), Some(0));
    assert_eq!(limiter.allow(), None);
    let window = Arc::downgrade(limiter.window());
    drop(limiter);
    std::thread::sleep(TICK * 3);
    assert!(window.upgrade().is_none(), "the ticker still holds it");
}

#[test]
fn a_limiter_that_goes_reports_what_it_held_back_at_once() {
    let limiter = LogLimiter::unticked("going line", Duration::from_secs(3_600));
    assert_eq!(limiter.allow(), Some(0));
    assert_eq!(limiter.allow(), None);
    let window = limiter.window();
    assert_eq!(window.flush(Instant::now(), false), None, "within the hour");
    assert_eq!(window.flush(Instant::now(), true), Some(1));
    assert_eq!(window.flush(Instant::now(), true), None);
}

/// What `f` logs on this thread, as text.
fn logged(f: impl FnOnce()) -> String {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&buffer);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Sink(Arc::clone(&sink)))
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_summary_line_names_the_line_and_carries_the_count() {
    // tracing's per-line caches are shared by the whole test process, and
    // a scoped subscriber of another test starting or ending at the same
    // moment can make one capture miss a line: a few tries, each with a
    // limiter of its own, and one must hold the line.
    let mut text = String::new();
    for _ in 0..5 {
        let limiter = LogLimiter::unticked("malformed test message", Duration::from_millis(100));
        text = logged(|| {
            assert_eq!(limiter.allow(), Some(0));
            for _ in 0..1_999 {
                assert_eq!(limiter.allow(), None);
            }
            std::thread::sleep(Duration::from_millis(150));
            assert_eq!(limiter.flush(), Some(1_999));
        });
        if !text.is_empty() {
            break;
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("WARN"), "{text}");
    assert!(
        lines[0].contains("1999 more like this in the last 0.")
            && lines[0].contains(" s: malformed test message"),
        "{text}"
    );
    assert!(lines[0].contains("held_back=1999"), "{text}");
    assert!(
        lines[0].contains("events_tests.rs:"),
        "where the line is: {text}"
    );
}

#[test]
fn the_macro_writes_one_line_per_interval_per_call_site() {
    let text = logged(|| {
        for _ in 0..10 {
            crate::warn_limited!("a limited test warning", value = 7);
        }
        crate::warn_limited!("another limited test warning");
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("a limited test warning value=7 held_back=0"),
        "{text}"
    );
    assert!(
        lines[1].contains("another limited test warning held_back=0"),
        "{text}"
    );
}
