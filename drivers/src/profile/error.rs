//! What can go wrong with a profile: loading it, decoding registers with
//! it, and encoding a setting's value.

/// Why a profile could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("{origin}: cannot read the profile: {message}")]
    Read {
        /// The file.
        origin: String,
        /// The I/O error.
        message: String,
    },
    /// Not valid TOML, an unknown key, a missing key or a value of the wrong
    /// type.
    #[error("{origin}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file (or builtin) name.
        origin: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Well-formed but inconsistent (offset outside its block, unknown alarm
    /// name, min above max...).
    #[error("{origin}: {path}: {reason}")]
    Invalid {
        /// The file (or builtin) name.
        origin: String,
        /// Path of the offending key, such as `fields.current_a.offset`.
        path: String,
        /// Why it is rejected.
        reason: String,
    },
    /// [`super::resolve`] found neither a builtin nor a file by that name.
    #[error("no profile {name:?}: not a builtin ({builtins}) and no such file")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The builtin names, comma separated.
        builtins: String,
    },
}

/// Why registers could not be decoded into a reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterDecodeError {
    /// The registers decode to a reading no pack can make (a value out of
    /// its physical range): refused, never published as a sample.
    #[error("the registers decode to an impossible reading: {0}")]
    Impossible(#[from] packgate_protocol::SampleError),
    /// Not one register vector per profile block.
    #[error("{got} register blocks given; the profile reads {expected}")]
    BlockCount {
        /// Blocks in the profile.
        expected: usize,
        /// Blocks given.
        got: usize,
    },
    /// A block does not hold the registers the profile reads.
    #[error("block {block} holds {got} registers; the profile reads {expected}")]
    BlockLength {
        /// Block index.
        block: usize,
        /// Registers the profile reads.
        expected: usize,
        /// Registers given.
        got: usize,
    },
    /// A count register holds 0 or more than its `max_count`.
    #[error("{field}: count register holds {count}; accepted 1 to {max}")]
    CountOutOfRange {
        /// Which array (`cells`, `temperatures`).
        field: &'static str,
        /// The count read.
        count: u32,
        /// The largest count accepted.
        max: u16,
    },
    /// A scale-factor register is outside -10..=10 (SunSpec's "not
    /// implemented" -32768 included).
    #[error("{field}: scale factor register holds {sf}; accepted -10 to 10")]
    ScaleFactor {
        /// The field it scales.
        field: String,
        /// The scale factor read.
        sf: i16,
    },
    /// A value decoded to NaN or infinity (an f32 register, or overflow).
    #[error("{field}: value is not a finite number")]
    NotFinite {
        /// The field.
        field: String,
    },
    /// An ASCII register range is not valid UTF-8 text.
    #[error("{field}: registers are not ASCII text")]
    NotText {
        /// The field.
        field: &'static str,
    },
    /// A location outside the registers given (cannot happen with a
    /// validated profile and correctly sized blocks; reported, not panicked).
    #[error("{field}: registers outside block {block}")]
    OutOfBlock {
        /// The field.
        field: String,
        /// Block index.
        block: usize,
    },
}

/// Why a setting's value cannot be written or its read-back understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingValueError {
    /// NaN or infinity.
    #[error("{setting}: {value} is not a finite number")]
    NotFinite {
        /// The setting.
        setting: String,
        /// The value.
        value: f64,
    },
    /// Outside the setting's `min..=max`.
    #[error("{setting}: {value} is outside {min}..={max}")]
    OutOfBounds {
        /// The setting.
        setting: String,
        /// The value.
        value: f64,
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
    /// The raw register value does not fit the register type.
    #[error("{setting}: {value} needs raw value {raw}, which does not fit a {ty}")]
    DoesNotFit {
        /// The setting.
        setting: String,
        /// The value.
        value: f64,
        /// The raw value it scales to.
        raw: f64,
        /// The register type.
        ty: &'static str,
    },
    /// The read-back did not return the setting's register count.
    #[error("{setting}: {got} registers read back; the setting has {expected}")]
    RegisterCount {
        /// The setting.
        setting: String,
        /// Registers of the setting.
        expected: u16,
        /// Registers given.
        got: usize,
    },
}
