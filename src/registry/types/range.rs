//! Byte ranges: the `Range` header of blob GETs and the `Content-Range` of upload PATCHes.

/// An inclusive byte range `start..=end` inside a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Saturating: `0-18446744073709551615` is one byte short of its real length, which no
    /// body can have anyway (parsers hand in `start <= end`).
    pub fn len(&self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a `Range` request header asks of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole blob (a header we may ignore, per RFC 9110 §14.2).
    Whole,
    Partial(ByteRange),
    /// A well-formed range that lies outside the blob: 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against a blob of `size` bytes. Multiple ranges
/// and other units are ignored (the whole blob is served), as RFC 9110 allows.
pub fn parse_range_header(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes
        (true, false) => match parse(last) {
            None => return RangeRequest::Whole,
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => return RangeRequest::Unsatisfiable,
            Some(n) => ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (false, true) => match parse(first) {
            Some(start) if start < size => ByteRange {
                start,
                end: size - 1,
            },
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Whole,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start > end => return RangeRequest::Whole,
            (Some(start), Some(_)) if start >= size => return RangeRequest::Unsatisfiable,
            (Some(start), Some(end)) => ByteRange {
                start,
                end: end.min(size - 1),
            },
            _ => return RangeRequest::Whole,
        },
        (true, true) => return RangeRequest::Whole,
    };
    RangeRequest::Partial(range)
}

/// Parses an upload chunk's `Content-Range: a-b` (distribution's form, without a unit; `bytes a-b`
/// and `bytes=a-b` are accepted too). Returns `None` when malformed.
pub fn parse_upload_content_range(value: &str) -> Option<ByteRange> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = b.trim().parse().ok()?;
    (start <= end).then_some(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn blob_ranges() {
        assert_eq!(parse_range_header("bytes=0-9", 100), partial(0, 9));
        assert_eq!(parse_range_header("bytes=90-", 100), partial(90, 99));
        assert_eq!(parse_range_header("bytes=-10", 100), partial(90, 99));
        assert_eq!(parse_range_header("bytes=-1000", 100), partial(0, 99));
        assert_eq!(parse_range_header("bytes=50-1000", 100), partial(50, 99));
        assert_eq!(
            parse_range_header("bytes=100-", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range_header("bytes=100-200", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range_header("bytes=-0", 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range_header("bytes=0-", 0),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range_header("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(
            parse_range_header("bytes=0-1,5-6", 100),
            RangeRequest::Whole
        );
        assert_eq!(parse_range_header("bytes=x-y", 100), RangeRequest::Whole);
        assert_eq!(parse_range_header("bytes=9-3", 100), RangeRequest::Whole);
    }

    #[test]
    fn upload_ranges() {
        let r = |start, end| Some(ByteRange { start, end });
        assert_eq!(parse_upload_content_range("0-99"), r(0, 99));
        assert_eq!(parse_upload_content_range("bytes 100-199/*"), r(100, 199));
        assert_eq!(parse_upload_content_range("bytes=5-5"), r(5, 5));
        assert_eq!(parse_upload_content_range("9-3"), None);
        assert_eq!(parse_upload_content_range("garbage"), None);
        let whole_space = parse_upload_content_range("0-18446744073709551615").unwrap();
        assert_eq!(whole_space.len(), u64::MAX, "no overflow");
    }
}
