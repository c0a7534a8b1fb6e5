//! HTTP/1.1 framing pieces that the services' client ([`crate::client`]) and
//! server ([`crate::server::http1`]) share: RFC 9112's `Content-Length`,
//! header-value token lists and chunk-size lines.

/// A chunk-size line (size and extensions) longer than this is refused.
pub(crate) const MAX_LINE: usize = 4 * 1024;

/// A Content-Length: digits only.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A chunk-size line at the start of `buf`: the size and the line's length
/// with its CRLF, or `None` while the line is not whole.
pub(crate) fn chunk_size(buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_LINE {
            Err("a chunk's size line is too long".into())
        } else {
            Ok(None)
        };
    };
    let line = &buf[..end];
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err("a chunk's size is not hexadecimal".into());
    }
    let size = digits.iter().fold(0usize, |n, &d| {
        n * 16 + (d as char).to_digit(16).unwrap_or(0) as usize
    });
    Ok(Some((size, end + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r\n"), Ok(Some((26, 4))));
        assert_eq!(chunk_size(b"A;name=value\r\nxx"), Ok(Some((10, 14))));
        assert_eq!(chunk_size(b"0\r\n\r\n"), Ok(Some((0, 3))));
        assert_eq!(chunk_size(b"1a"), Ok(None));
        assert!(chunk_size(b"zz\r\n").is_err());
        assert!(chunk_size(b"\r\n").is_err());
        assert!(chunk_size(b"ffffffffffffffffff\r\n").is_err());
        assert!(chunk_size(&[b'1'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(parse_length(b" 42 "), Some(42));
        for bad in [&b""[..], b"-1", b"1e3", b"+5", b"99999999999999999999999"] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }
}
