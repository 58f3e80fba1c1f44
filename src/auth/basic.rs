//! The `Authorization: Basic …` header (RFC 7617): base64 of `user:password`, split at the first
//! colon, UTF-8. Anything else — another scheme, bad base64, no colon, an empty user, control
//! characters in the user — is "no valid credentials", never an error the client can probe.

use std::fmt;

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Longest header value considered. bcrypt reads 72 bytes of a password; a few KiB leaves room for
/// long user names and argon2 passwords while keeping decoding trivially cheap.
const MAX_ENCODED_LEN: usize = 4096;

/// Standard base64; clients disagree on padding, so accept it present or absent.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A user and password from a Basic header. `Debug` does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses an `Authorization` header value; `None` unless it holds well-formed Basic credentials.
pub fn parse_basic(header: &str) -> Option<Credentials> {
    let (scheme, encoded) = header.trim().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = encoded.trim();
    if encoded.is_empty() || encoded.len() > MAX_ENCODED_LEN {
        return None;
    }
    let decoded = String::from_utf8(LENIENT_BASE64.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    // Control characters (NUL above all) in a user name are never legitimate, and refusing them
    // keeps the credential cache's `user NUL password` key unambiguous.
    if user.is_empty() || user.chars().any(char::is_control) {
        return None;
    }
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;

    fn header(decoded: &[u8]) -> String {
        format!("Basic {}", B64.encode(decoded))
    }

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn well_formed_headers_parse() {
        assert_eq!(
            parse_basic(&header(b"alice:secret")),
            creds("alice", "secret")
        );
        // Split at the first colon: the password may contain more.
        assert_eq!(parse_basic(&header(b"alice:a:b:")), creds("alice", "a:b:"));
        assert_eq!(parse_basic(&header(b"alice:")), creds("alice", ""));
        assert_eq!(
            parse_basic(&header("zoë:pässwörd".as_bytes())),
            creds("zoë", "pässwörd")
        );
        // Scheme is case-insensitive; extra spaces and missing padding are tolerated.
        assert_eq!(
            parse_basic("bAsIc   YWxpY2U6c2VjcmV0  "),
            creds("alice", "secret")
        );
        assert_eq!(parse_basic("Basic YWxpY2U6cw"), creds("alice", "s"));
        assert_eq!(parse_basic("Basic YWxpY2U6cw=="), creds("alice", "s"));
    }

    #[test]
    fn malformed_headers_are_no_credentials() {
        let long = header(format!("alice:{}", "x".repeat(4000)).as_bytes());
        for bad in [
            String::new(),
            "Basic".into(),
            "Basic ".into(),
            "Bearer YWxpY2U6c2VjcmV0".into(),
            "BasicYWxpY2U6c2VjcmV0".into(),
            "Basic !!!notbase64".into(),
            header(b"no colon"),
            header(b":password"),
            header(b"al\0ice:secret"),
            header(b"al\nice:secret"),
            header(b"alice:\xff\xfe"),
            long,
        ] {
            assert_eq!(parse_basic(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", parse_basic(&header(b"alice:hunter2")));
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
