//! What every framed protocol tells the serial link: where a reply frame
//! starts, how long it is, and why bytes are not a frame, by kind.

/// What a protocol makes of the bytes received so far, which begin at one
/// of its start bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameStatus {
    /// A frame may be starting: more bytes are needed to tell.
    Incomplete,
    /// The first `n` bytes are one whole frame, its checksum good.
    Complete(usize),
    /// These bytes are no frame of the protocol.
    Invalid(FrameError),
}

impl From<Result<Option<usize>, FrameError>> for FrameStatus {
    /// A codec's own frame check: `Ok(Some(len))` a whole frame,
    /// `Ok(None)` too few bytes yet, `Err` no frame.
    fn from(checked: Result<Option<usize>, FrameError>) -> Self {
        match checked {
            Ok(Some(len)) => FrameStatus::Complete(len),
            Ok(None) => FrameStatus::Incomplete,
            Err(e) => FrameStatus::Invalid(e),
        }
    }
}

/// Why bytes on a serial line are not a good frame, or not the awaited
/// one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The checksum does not match the contents (line noise, a bad
    /// termination, two talkers at once).
    #[error("bad checksum: computed {computed:#x}, received {received:#x}")]
    Checksum {
        /// The checksum of the contents.
        computed: u32,
        /// The checksum in the frame.
        received: u32,
    },
    /// The line went quiet, or the request's time ran out, before the
    /// frame was whole.
    #[error("short frame: {got} of {expected} bytes")]
    Short {
        /// Bytes received.
        got: usize,
        /// Bytes the frame announced (or the least a frame has).
        expected: usize,
    },
    /// A well-formed frame from, or for, another unit on the line.
    #[error("frame from address {found}, expected {expected}")]
    WrongAddress {
        /// The address asked.
        expected: u8,
        /// The address in the reply.
        found: u8,
    },
    /// A good frame that answers another request (another command or
    /// register).
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// Bytes that break the protocol's layout: a bad start or end byte,
    /// an impossible length, a non-hex character, a field past the end.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// The kind of a [`FrameError`], for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameErrorKind {
    /// See [`FrameError::Checksum`].
    Checksum,
    /// See [`FrameError::Short`].
    Short,
    /// See [`FrameError::WrongAddress`].
    WrongAddress,
    /// See [`FrameError::Unexpected`].
    Unexpected,
    /// See [`FrameError::Malformed`].
    Malformed,
}

impl FrameErrorKind {
    /// Stable lower-case name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameErrorKind::Checksum => "checksum",
            FrameErrorKind::Short => "short_frame",
            FrameErrorKind::WrongAddress => "wrong_address",
            FrameErrorKind::Unexpected => "unexpected_reply",
            FrameErrorKind::Malformed => "malformed",
        }
    }
}

impl FrameError {
    /// The error's kind.
    pub fn kind(&self) -> FrameErrorKind {
        match self {
            FrameError::Checksum { .. } => FrameErrorKind::Checksum,
            FrameError::Short { .. } => FrameErrorKind::Short,
            FrameError::WrongAddress { .. } => FrameErrorKind::WrongAddress,
            FrameError::Unexpected(_) => FrameErrorKind::Unexpected,
            FrameError::Malformed(_) => FrameErrorKind::Malformed,
        }
    }
}

/// How one protocol's reply frames are delimited on the wire. Pure: the
/// serial link calls it on the bytes it has received.
pub trait Framing {
    /// The byte every frame begins with; bytes before it are line noise
    /// and dropped.
    const START: u8;
    /// Longest frame the protocol allows; a frame announcing more is
    /// [`FrameError::Malformed`], so a hostile device cannot grow the
    /// receive buffer.
    const MAX_LEN: usize;

    /// What `buf` (which begins with [`Self::START`]) holds: a whole frame
    /// with a good checksum and its length, too few bytes to tell, or why
    /// it is no frame. Never panics, whatever the bytes.
    fn frame_len(buf: &[u8]) -> FrameStatus;
}
