//! `Content-Encoding` of an upload, one rule for every tier: none or
//! `identity`, or `gzip` (also `x-gzip`), names case-insensitive; anything else
//! — `br`, `deflate`, stacked codings — is refused with a message that says
//! what to send. Gzip is inflated here with a bound on the inflated size, so
//! a small body cannot expand past the batch limit (a "zip bomb").

use std::io::Read;

/// How an upload's body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// Not compressed.
    Identity,
    /// Gzip.
    Gzip,
}

/// Why an upload's body was refused before it was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A `Content-Encoding` other than gzip or identity.
    #[error("Content-Encoding `{0}` is not accepted: send the body uncompressed or with `gzip`")]
    UnsupportedEncoding(String),
    /// Labelled gzip but not valid gzip.
    #[error("the body is not valid gzip ({0}); is Content-Encoding right?")]
    NotGzip(String),
    /// Larger than the limit once inflated.
    #[error("the body is over {limit} bytes after decompression: send fewer events per batch")]
    TooLarge {
        /// The limit, in inflated bytes.
        limit: usize,
    },
}

impl BodyError {
    /// A stable machine-readable code, for API error bodies and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::UnsupportedEncoding(_) => "unsupported_encoding",
            BodyError::NotGzip(_) => "unreadable_body",
            BodyError::TooLarge { .. } => "too_large",
        }
    }

    /// The HTTP status both tiers answer with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedEncoding(_) => 415,
            BodyError::NotGzip(_) => 400,
            BodyError::TooLarge { .. } => 413,
        }
    }
}

/// Longest `Content-Encoding` value echoed back in an error.
const MAX_ECHO: usize = 64;

/// The encoding a `Content-Encoding` header value names.
pub fn content_encoding(header: Option<&str>) -> Result<ContentEncoding, BodyError> {
    let value = header.unwrap_or("").trim();
    if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        Ok(ContentEncoding::Identity)
    } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
        Ok(ContentEncoding::Gzip)
    } else {
        let echo: String = value.chars().take(MAX_ECHO).collect();
        Err(BodyError::UnsupportedEncoding(echo))
    }
}

/// Inflates a gzip body, refusing more than `limit` inflated bytes.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| BodyError::NotGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// The body as the decoder reads it: inflated when gzip.
pub fn decoded_body<'a>(
    header: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, BodyError> {
    match content_encoding(header)? {
        ContentEncoding::Identity => Ok(std::borrow::Cow::Borrowed(body)),
        ContentEncoding::Gzip => gunzip(body, limit).map(std::borrow::Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn encoding_names_are_case_insensitive_and_only_gzip_compresses() {
        for ok in [None, Some(""), Some("identity"), Some(" Identity ")] {
            assert_eq!(
                content_encoding(ok),
                Ok(ContentEncoding::Identity),
                "{ok:?}"
            );
        }
        for gz in ["gzip", "GZIP", "Gzip", "x-gzip"] {
            assert_eq!(
                content_encoding(Some(gz)),
                Ok(ContentEncoding::Gzip),
                "{gz}"
            );
        }
        for bad in ["br", "deflate", "gzip, gzip", "compress", "zstd"] {
            let e = content_encoding(Some(bad)).unwrap_err();
            assert_eq!(
                (e.status(), e.code()),
                (415, "unsupported_encoding"),
                "{bad}"
            );
        }
        let long = "x".repeat(10_000);
        assert!(content_encoding(Some(&long)).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn gzip_inflates_within_the_limit_and_refuses_bombs_and_garbage() {
        assert_eq!(gunzip(&gzip(b"hello"), 5).unwrap(), b"hello");
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2048);
        assert_eq!(
            gunzip(&bomb, 1000),
            Err(BodyError::TooLarge { limit: 1000 })
        );
        let e = gunzip(b"not gzip at all", 1000).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "unreadable_body"));
        let truncated = &gzip(b"hello world")[..10];
        assert_eq!(gunzip(truncated, 1000).unwrap_err().status(), 400);
    }
}
