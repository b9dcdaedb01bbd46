//! RS-485 direction control: who switches the transceiver between
//! transmit and receive.
//!
//! Three ways, chosen by [`choose_direction`]:
//! - **Driver-enable pin**: the transceiver's DE (and /RE) input is wired to
//!   a GPIO line. [`transmit_with_de`] raises it, writes the frame, waits
//!   until the last byte has left the wire at the line's baud rate, and
//!   lowers it, through the same embedded-hal
//!   [`OutputPin`] as the other outputs.
//! - **Kernel RS-485 mode**: DE is wired to the UART's RTS and the UART
//!   driver toggles it itself, exactly at the end of the last stop bit
//!   (`TIOCSRS485`, see [`enable_kernel_rs485`]). The best timing where the
//!   UART has it (the Pi's PL011 does, with RTS on GPIO17; most USB
//!   adapters do not).
//! - **Automatic**: the transceiver or USB adapter switches by itself (most
//!   USB RS-485 adapters, HATs with auto-direction); nothing to do.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

/// Why direction control failed.
#[derive(Debug, thiserror::Error)]
pub enum Rs485Error {
    /// The serial device has no kernel RS-485 mode.
    #[error("the serial device has no kernel RS-485 mode: {0}")]
    Unsupported(#[source] std::io::Error),
    /// The `TIOCSRS485` request failed otherwise.
    #[error("TIOCSRS485 failed: {0}")]
    Ioctl(#[source] std::io::Error),
    /// Writing the frame failed (the driver-enable pin was lowered).
    #[error("RS-485 write failed: {0}")]
    Write(#[source] std::io::Error),
    /// Setting the driver-enable pin failed.
    #[error("RS-485 driver-enable pin: {0}")]
    Pin(String),
}

/// How one serial line is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Bits per second.
    pub baud: u32,
    /// Data bits per character (7 or 8).
    pub data_bits: u8,
    /// Whether a parity bit is sent.
    pub parity: bool,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
}

impl LineSettings {
    /// 8 data bits, no parity, 1 stop bit at `baud`.
    pub fn eight_n_one(baud: u32) -> Self {
        Self {
            baud,
            data_bits: 8,
            parity: false,
            stop_bits: 1,
        }
    }

    /// Bits on the wire per character: start, data, parity, stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + u32::from(self.data_bits) + u32::from(self.parity) + u32::from(self.stop_bits)
    }

    /// Time on the wire of `chars` characters.
    pub fn chars_time(&self, chars: usize) -> Duration {
        let bits = u64::from(self.bits_per_char()) * chars as u64;
        Duration::from_nanos(bits.saturating_mul(1_000_000_000) / u64::from(self.baud.max(1)))
    }
}

/// Whether the serial device offers the kernel's RS-485 mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelRs485 {
    /// `TIOCSRS485` was accepted.
    Supported,
    /// The driver refused it (`ENOTTY`, `EINVAL`, `ENOIOCTLCMD`).
    Unsupported,
}

/// Who switches the transceiver's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectionControl {
    /// A GPIO driver-enable pin around each transmit ([`transmit_with_de`]).
    DriverEnablePin,
    /// The UART driver, through RTS ([`enable_kernel_rs485`]).
    Kernel,
    /// The hardware itself.
    Automatic,
}

/// The direction control for a line: a configured driver-enable pin wins
/// (the operator wired DE to that GPIO, not to RTS); else the kernel's
/// RS-485 mode where the UART has it; else the hardware is trusted to
/// switch by itself.
pub fn choose_direction(de_pin_configured: bool, kernel: KernelRs485) -> DirectionControl {
    match (de_pin_configured, kernel) {
        (true, _) => DirectionControl::DriverEnablePin,
        (false, KernelRs485::Supported) => DirectionControl::Kernel,
        (false, KernelRs485::Unsupported) => DirectionControl::Automatic,
    }
}

/// How long to keep DE high after `write` returned, having spent
/// `write_elapsed` in it: the frame's time on the wire plus one character
/// of margin, counted from the start of the write (a tty's write returns
/// once the bytes are queued, while they are still being sent). One
/// character of margin keeps well inside Modbus RTU's 3.5 character
/// turnaround before a reply can start.
pub fn de_hold_time(line: &LineSettings, frame_len: usize, write_elapsed: Duration) -> Duration {
    line.chars_time(frame_len + 1).saturating_sub(write_elapsed)
}

/// Transmits `frame` with a driver-enable pin: DE high, `write`, wait
/// [`de_hold_time`], DE low. DE is lowered even when the write fails, so a
/// failed write never leaves the bus driven.
pub fn transmit_with_de<P, D>(
    de: &mut P,
    delay: &mut D,
    line: &LineSettings,
    frame: &[u8],
    write: impl FnOnce(&[u8]) -> std::io::Result<()>,
) -> Result<(), Rs485Error>
where
    P: OutputPin,
    D: DelayNs,
{
    let pin_error = |err: P::Error| Rs485Error::Pin(format!("{err:?}"));
    de.set_high().map_err(pin_error)?;
    let started = Instant::now();
    let written = write(frame);
    if written.is_ok() {
        let hold = de_hold_time(line, frame.len(), started.elapsed());
        delay.delay_us(u32::try_from(hold.as_micros()).unwrap_or(u32::MAX));
    }
    let lowered = de.set_low().map_err(pin_error);
    written.map_err(Rs485Error::Write)?;
    lowered
}

/// A [`DelayNs`] that sleeps the thread (for a blocking bus task).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadDelay;

impl DelayNs for ThreadDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

/// Flags of the kernel's `struct serial_rs485` (include/uapi/linux/serial.h).
const SER_RS485_ENABLED: u32 = 1 << 0;
const SER_RS485_RTS_ON_SEND: u32 = 1 << 1;
const SER_RS485_RTS_AFTER_SEND: u32 = 1 << 2;

/// The kernel's `struct serial_rs485`: 32 bytes, stable uapi.
#[repr(C)]
#[derive(Debug, Default)]
struct SerialRs485 {
    flags: u32,
    delay_rts_before_send_ms: u32,
    delay_rts_after_send_ms: u32,
    padding: [u32; 5],
}

/// Puts the UART behind `fd` into the kernel's RS-485 mode: RTS high
/// (DE on) while sending, low after, with the given delays around a
/// transmit, milliseconds. [`Rs485Error::Unsupported`] when its driver has
/// no such mode: fall back per [`choose_direction`].
pub fn enable_kernel_rs485(
    fd: BorrowedFd<'_>,
    delay_rts_before_send_ms: u32,
    delay_rts_after_send_ms: u32,
) -> Result<(), Rs485Error> {
    let mut conf = SerialRs485 {
        flags: SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND,
        delay_rts_before_send_ms,
        delay_rts_after_send_ms,
        ..SerialRs485::default()
    };
    debug_assert_eq!(conf.flags & SER_RS485_RTS_AFTER_SEND, 0);
    // SAFETY: the one unsafe block of direction control. TIOCSRS485 reads
    // and writes exactly one `struct serial_rs485`, which `SerialRs485`
    // mirrors (repr(C), 8 u32s = 32 bytes); `conf` lives across the call
    // and `fd` is a borrowed, open descriptor. No other memory is touched.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSRS485 as _,
            std::ptr::addr_of_mut!(conf),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // 515 is the kernel's ENOIOCTLCMD, which can leak out of some drivers.
    match err.raw_os_error() {
        Some(libc::ENOTTY | libc::EINVAL | libc::ENOTSUP | 515) => {
            Err(Rs485Error::Unsupported(err))
        }
        _ => Err(Rs485Error::Ioctl(err)),
    }
}

/// Probes whether the serial device behind `fd` has the kernel's RS-485
/// mode by enabling it (with no extra delays).
pub fn probe_kernel_rs485(fd: BorrowedFd<'_>) -> Result<KernelRs485, Rs485Error> {
    match enable_kernel_rs485(fd, 0, 0) {
        Ok(()) => Ok(KernelRs485::Supported),
        Err(Rs485Error::Unsupported(_)) => Ok(KernelRs485::Unsupported),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::convert::Infallible;
    use std::os::fd::AsFd;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<String>>>;

    struct LoggingPin(Log);
    impl embedded_hal::digital::ErrorType for LoggingPin {
        type Error = Infallible;
    }
    impl OutputPin for LoggingPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().push("de low".into());
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().push("de high".into());
            Ok(())
        }
    }

    struct LoggingDelay(Log, Rc<RefCell<u64>>);
    impl DelayNs for LoggingDelay {
        fn delay_ns(&mut self, ns: u32) {
            self.0.borrow_mut().push("wait".into());
            *self.1.borrow_mut() += u64::from(ns);
        }
    }

    #[test]
    fn char_and_frame_times_follow_the_framing() {
        let line = LineSettings::eight_n_one(9_600);
        assert_eq!(line.bits_per_char(), 10);
        // 8 bytes of a Modbus read request at 9600 8N1: 8.33 ms.
        assert_eq!(line.chars_time(8), Duration::from_nanos(8_333_333));
        let even = LineSettings {
            parity: true,
            ..line
        };
        assert_eq!(even.bits_per_char(), 11);
        let hold = de_hold_time(&line, 8, Duration::from_millis(2));
        assert_eq!(hold, Duration::from_nanos(9_375_000 - 2_000_000));
        assert_eq!(
            de_hold_time(&line, 8, Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn de_goes_high_then_write_then_wait_for_the_last_byte_then_low() {
        let log: Log = Rc::default();
        let waited_ns = Rc::new(RefCell::new(0));
        let mut de = LoggingPin(log.clone());
        let mut delay = LoggingDelay(log.clone(), waited_ns.clone());
        let line = LineSettings::eight_n_one(19_200);
        let frame = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd];
        transmit_with_de(&mut de, &mut delay, &line, &frame, |bytes| {
            log.borrow_mut().push(format!("write {}", bytes.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(*log.borrow(), ["de high", "write 8", "wait", "de low"]);
        // 9 characters (8 + 1 of margin) at 19200 8N1 is 4.6875 ms, less
        // the little time the write took.
        let waited = Duration::from_nanos(*waited_ns.borrow());
        let full = Duration::from_micros(4_687);
        assert!(
            waited <= full && waited > full - Duration::from_millis(2),
            "{waited:?}"
        );
    }

    #[test]
    fn a_failed_write_still_lowers_de_and_skips_the_wait() {
        let log: Log = Rc::default();
        let mut de = LoggingPin(log.clone());
        let mut delay = LoggingDelay(log.clone(), Rc::default());
        let line = LineSettings::eight_n_one(9_600);
        let err = transmit_with_de(&mut de, &mut delay, &line, &[1, 2], |_| {
            Err(std::io::Error::other("unplugged"))
        })
        .unwrap_err();
        assert!(matches!(err, Rs485Error::Write(_)), "{err}");
        assert_eq!(*log.borrow(), ["de high", "de low"]);
    }

    #[test]
    fn direction_choice() {
        use DirectionControl::*;
        assert_eq!(
            choose_direction(true, KernelRs485::Supported),
            DriverEnablePin
        );
        assert_eq!(choose_direction(false, KernelRs485::Supported), Kernel);
        assert_eq!(choose_direction(false, KernelRs485::Unsupported), Automatic);
    }

    #[test]
    fn a_pty_has_no_kernel_rs485_mode() {
        let Ok(ptmx) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
        else {
            return; // no pseudo-terminals in this sandbox
        };
        assert_eq!(
            probe_kernel_rs485(ptmx.as_fd()).unwrap(),
            KernelRs485::Unsupported
        );
        let err = enable_kernel_rs485(ptmx.as_fd(), 0, 0).unwrap_err();
        assert!(matches!(err, Rs485Error::Unsupported(_)), "{err}");
    }

    #[test]
    fn serial_rs485_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<SerialRs485>(), 32);
    }
}
