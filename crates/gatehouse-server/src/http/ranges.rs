//! `Range: bytes=…` on a tarball download (RFC 9110 §14): one range is answered
//! `206`, from the blob store without reading the rest; anything else (several
//! ranges, another unit, a malformed or invalid one) is ignored and the whole
//! tarball sent, as the RFC allows.

use gatehouse_store::blobs::ByteRange;

/// The one byte range a `Range` header asks for, if it asks for exactly one.
pub fn parse(header: &str) -> Option<ByteRange> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |digits: &str| {
        let digits = digits.trim();
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => number(last).map(ByteRange::Suffix),
        (false, true) => number(first).map(ByteRange::From),
        (false, false) => {
            let (first, last) = (number(first)?, number(last)?);
            // A last position before the first makes the header invalid: ignored.
            (first <= last).then_some(ByteRange::Bounded { first, last })
        }
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_is_read_and_anything_else_ignored() {
        assert_eq!(parse("bytes=0-499"), Some(ByteRange::Bounded { first: 0, last: 499 }));
        assert_eq!(parse(" bytes=500- "), Some(ByteRange::From(500)));
        assert_eq!(parse("bytes=-20"), Some(ByteRange::Suffix(20)));
        for ignored in [
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=9-1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "0-1",
        ] {
            assert_eq!(parse(ignored), None, "{ignored}");
        }
    }
}
