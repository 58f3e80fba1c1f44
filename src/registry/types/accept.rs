//! The `Accept` header of a manifest GET: which media types the client takes.

/// Whether the request's `Accept` header lines (their raw values) allow `media_type`. Clients
/// such as skopeo send one media type per line, so every line counts. No Accept at all, `*/*`,
/// or an empty item allows anything; a line that is not text is skipped.
pub fn accepts<'a>(lines: impl IntoIterator<Item = &'a [u8]>, media_type: &str) -> bool {
    let mut any_line = false;
    for line in lines {
        any_line = true;
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        for item in line.split(',') {
            let item = item.split(';').next().unwrap_or("").trim();
            if item == media_type || item == "*/*" || item.is_empty() {
                return true;
            }
        }
    }
    !any_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accept_line_counts() {
        assert!(accepts([], "a/b"));
        assert!(!accepts([b"x/y".as_slice()], "a/b"));
        assert!(accepts([b"x/y".as_slice(), b"c/d, a/b;q=0.5"], "a/b"));
        assert!(accepts([b"*/*".as_slice()], "a/b"));
        assert!(!accepts([b"\xff\xfe".as_slice()], "a/b"));
    }
}
