//! Errors of the codec: each names the field (by its long name) and the limit.

use crate::event::EventKind;

/// The two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/msgpack`, what the tracker sends.
    MessagePack,
    /// `application/json`, for debugging and mobile clients.
    Json,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::MessagePack => "MessagePack",
            Format::Json => "JSON",
        })
    }
}

/// Why a byte string is not an acceptable batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than [`Limits::max_batch_bytes`].
    #[error("batch is {actual} bytes; the limit is {limit} bytes: send fewer events per batch")]
    TooLarge {
        /// Input size.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes do not follow the schema's structure.
    #[error("not a valid {format} batch at `{field}`: {detail}")]
    Malformed {
        /// Which encoding was expected.
        format: Format,
        /// Long-name path of the place parsing stopped (`.` for the top level).
        field: String,
        /// The parser's description.
        detail: String,
    },
    /// The batch was written for another schema version.
    #[error("schema_version {found} is not supported; this server reads version {supported}: update the tracker or the server so they match")]
    UnsupportedVersion {
        /// Version in the batch.
        found: u64,
        /// Version this build reads.
        supported: u8,
    },
    /// A field is well-formed but breaks a rule or a limit.
    #[error("`{field}` {problem}")]
    Invalid {
        /// Long-name path, e.g. `events[3].item`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl DecodeError {
    /// The offending field's path, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Malformed { field, .. } | DecodeError::Invalid { field, .. } => {
                Some(field)
            }
            DecodeError::UnsupportedVersion { .. } => Some("schema_version"),
            DecodeError::TooLarge { .. } => None,
        }
    }

    /// The HTTP status both tiers answer with: 413 for size, 400 for
    /// structure, 422 for a field that breaks a rule or another version.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } => 413,
            DecodeError::Malformed { .. } => 400,
            DecodeError::UnsupportedVersion { .. } | DecodeError::Invalid { .. } => 422,
        }
    }

    /// A stable machine-readable code, for API error bodies and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::Invalid { problem, .. } => problem.code(),
        }
    }
}

/// What is wrong with a well-formed field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A field the event's kind needs is absent.
    #[error("is required for this kind of event")]
    Missing,
    /// An empty string where a value is needed.
    #[error("must not be empty")]
    Empty,
    /// A string longer than its limit.
    #[error("is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list longer than its limit.
    #[error("has {len} entries; the limit is {max}")]
    TooMany {
        /// Actual count.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number outside its allowed range.
    #[error("is {value}; the allowed range is {min}..={max}")]
    OutOfRange {
        /// The number.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A kind name this build does not know.
    #[error("`{0}` is not a known kind (page_view, click, scroll, dwell, impression)")]
    UnknownKind(String),
    /// A device class name this build does not know.
    #[error("`{0}` is not a known device class (desktop, mobile, tablet, other)")]
    UnknownDevice(String),
    /// A field that only other kinds carry.
    #[error("is not allowed on {0} events")]
    NotAllowedFor(EventKind),
    /// An event id that is not a version-7 UUID.
    #[error("must be a UUIDv7 (time-ordered); got a version {0} UUID")]
    NotUuidV7(usize),
    /// Two events of one batch share an id.
    #[error("repeats the id of events[{0}]")]
    DuplicateId(usize),
    /// A character outside the allowed set.
    #[error("may contain only {0}")]
    BadChars(&'static str),
    /// One of two fields that come together (a rail slot's serve and position).
    #[error("is required with `{0}`")]
    RequiredWith(&'static str),
}

impl Problem {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Missing | Problem::RequiredWith(_) => "missing",
            Problem::Empty => "empty",
            Problem::TooLong { .. } => "too_long",
            Problem::TooMany { .. } => "too_many",
            Problem::OutOfRange { .. } => "out_of_range",
            Problem::UnknownKind(_) => "unknown_kind",
            Problem::UnknownDevice(_) => "unknown_device",
            Problem::NotAllowedFor(_) => "not_allowed",
            Problem::NotUuidV7(_) => "not_uuid_v7",
            Problem::DuplicateId(_) => "duplicate_id",
            Problem::BadChars(_) => "bad_chars",
        }
    }
}
