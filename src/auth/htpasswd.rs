//! The htpasswd file format, as Apache's `htpasswd` writes it: one `user:hash` per line, blank
//! lines and `#` comments skipped. Parsing is pure (bytes in, typed users out); reading the file,
//! logging and reloading belong to `users.rs`.
//!
//! Two kinds of problems, treated differently on purpose:
//! - a line in a scheme regapp refuses (`{SHA}`, `$apr1$`, crypt, plain text), or whose cost is
//!   above regapp's bounds (`password::MAX_BCRYPT_COST`, …), is skipped and reported as a
//!   [`Refused`] entry: the file may hold users from an nginx setup, and the others should keep
//!   working;
//! - a line that is not an htpasswd line at all (no colon, empty or repeated user, a bcrypt or
//!   argon2 hash that does not parse) fails the whole file with the line number, because a file
//!   that is being half-written or was mangled must not silently lose users.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest as _, Sha256};

use super::password::{HashError, PasswordHash, UnsupportedScheme};

/// A parsed htpasswd file: the users regapp can verify, and the ones it refused.
#[derive(Debug, Clone)]
pub struct Htpasswd {
    users: HashMap<String, PasswordHash>,
    refused: Vec<Refused>,
    digest: [u8; 32],
    blank: bool,
}

/// A user skipped because of its hash: its scheme, or its cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 1-based line number.
    pub line: usize,
    pub user: String,
    pub reason: Refusal,
}

/// Why a user's hash is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Scheme(UnsupportedScheme),
    /// Verifying it would cost more than regapp allows; says which bound.
    TooCostly(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Scheme(scheme) => write!(
                f,
                "scheme {scheme} is not supported (use bcrypt: htpasswd -B)"
            ),
            Refusal::TooCostly(why) => f.write_str(why),
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: user {:?} refused: {}",
            self.line, self.user, self.reason
        )
    }
}

/// A line that makes the whole file unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub problem: LineProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("no `:` between user and hash")]
    MissingColon,
    #[error("empty user name")]
    EmptyUser,
    #[error("user {user:?} appears again (first on line {first_line})")]
    DuplicateUser { user: String, first_line: usize },
    #[error("user {user:?}: {error}")]
    InvalidHash { user: String, error: HashError },
}

impl Htpasswd {
    /// Parses a whole file. Line endings may be `\n` or `\r\n`; surrounding whitespace is ignored.
    pub fn parse(content: &[u8]) -> Result<Self, ParseError> {
        let mut users = HashMap::new();
        let mut refused = Vec::new();
        let mut first_lines: HashMap<&str, usize> = HashMap::new();
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let fail = |problem| ParseError { line, problem };
            let text = std::str::from_utf8(raw)
                .map_err(|_| fail(LineProblem::NotUtf8))?
                .trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let (user, hash) = text
                .split_once(':')
                .ok_or(fail(LineProblem::MissingColon))?;
            if user.is_empty() {
                return Err(fail(LineProblem::EmptyUser));
            }
            if let Some(first_line) = first_lines.insert(user, line) {
                return Err(fail(LineProblem::DuplicateUser {
                    user: user.to_owned(),
                    first_line,
                }));
            }
            match PasswordHash::parse(hash) {
                Ok(hash) => {
                    users.insert(user.to_owned(), hash);
                }
                Err(HashError::Unsupported(scheme)) => refused.push(Refused {
                    line,
                    user: user.to_owned(),
                    reason: Refusal::Scheme(scheme),
                }),
                Err(HashError::TooCostly(why)) => refused.push(Refused {
                    line,
                    user: user.to_owned(),
                    reason: Refusal::TooCostly(why),
                }),
                Err(error) => {
                    return Err(fail(LineProblem::InvalidHash {
                        user: user.to_owned(),
                        error,
                    }))
                }
            }
        }
        Ok(Self {
            users,
            refused,
            digest: Sha256::digest(content).into(),
            blank: content.iter().all(u8::is_ascii_whitespace),
        })
    }

    /// The users with a supported hash.
    pub fn users(&self) -> &HashMap<String, PasswordHash> {
        &self.users
    }

    /// The users skipped for their scheme or cost, in file order.
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }

    /// Nothing but whitespace: what a file looks like between being truncated and written.
    pub fn is_blank(&self) -> bool {
        self.blank
    }

    /// SHA-256 of the file's bytes: tells a reload whether anything changed.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    pub(crate) fn into_users(self) -> HashMap<String, PasswordHash> {
        self.users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$04$zYLrQZpk9bg5mHzJTqvEROOYSrqYHLOlXTYi3qdujEHodu0v7COzS";

    fn parse(text: &str) -> Result<Htpasswd, ParseError> {
        Htpasswd::parse(text.as_bytes())
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_skipped() {
        let text = format!("# users\n\n  \nalice:{BCRYPT}\r\n  # indented comment\nbob:{BCRYPT}");
        let file = parse(&text).expect("valid file");
        let mut names: Vec<_> = file.users().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["alice", "bob"]);
        assert!(file.refused().is_empty());
        assert!(file.users()["alice"].verify("secret"));
    }

    #[test]
    fn empty_file_has_no_users() {
        let file = parse("").expect("valid");
        assert!(file.users().is_empty());
        assert_ne!(file.digest(), parse("\n").expect("valid").digest());
    }

    #[test]
    fn unsupported_schemes_are_refused_with_user_and_line() {
        let text = format!(
            "sha:{{SHA}}GpHWL3ymc5liWkNopqtdSjuqYHM=\nalice:{BCRYPT}\nmd5:$apr1$QjJchBIK$Ib/l9ALAZBr1abTwQRJ/n0\nplain:pw\n"
        );
        let file = parse(&text).expect("refused lines do not fail the file");
        assert_eq!(file.users().len(), 1);
        let refused: Vec<_> = file
            .refused()
            .iter()
            .map(|r| (r.line, r.user.as_str(), r.reason.clone()))
            .collect();
        assert_eq!(
            refused,
            [
                (1, "sha", Refusal::Scheme(UnsupportedScheme::Sha1)),
                (3, "md5", Refusal::Scheme(UnsupportedScheme::Apr1Md5)),
                (
                    4,
                    "plain",
                    Refusal::Scheme(UnsupportedScheme::PlainOrUnknown)
                ),
            ]
        );
        let message = file.refused()[2].to_string();
        assert!(
            message.contains("line 4") && message.contains("\"plain\""),
            "{message}"
        );
        assert!(
            !message.contains("pw"),
            "the plain-text password must not be echoed: {message}"
        );
    }

    /// A bcrypt cost of 31 (days per verification) or an argon2 of 4 GiB would stall every
    /// login and reload: such a line is refused like a weak scheme, and the others still work.
    #[test]
    fn hashes_above_the_cost_bounds_are_refused_with_user_and_line() {
        let costly_bcrypt = BCRYPT.replace("$2y$04$", "$2y$31$");
        let argon2 =
            "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        let text = format!("alice:{BCRYPT}\nbob:{costly_bcrypt}\ncarol:{argon2}\n");
        let file = parse(&text).expect("refused lines do not fail the file");
        assert_eq!(file.users().len(), 1);
        let refused: Vec<String> = file.refused().iter().map(ToString::to_string).collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with("line 2: user \"bob\" refused: bcrypt cost 31 is above")
                && refused[0].contains("maximum of 14"),
            "{refused:?}"
        );
        assert!(
            refused[1].starts_with("line 3: user \"carol\" refused: argon2 memory m=4194304")
                && refused[1].contains("maximum of 65536"),
            "{refused:?}"
        );
    }

    #[test]
    fn malformed_lines_fail_the_file_naming_the_line() {
        let cases: [(String, usize, LineProblem); 4] = [
            (
                format!("alice:{BCRYPT}\nno colon here\n"),
                2,
                LineProblem::MissingColon,
            ),
            (format!("\n:{BCRYPT}"), 2, LineProblem::EmptyUser),
            (
                format!("alice:{BCRYPT}\n# c\nalice:{BCRYPT}"),
                3,
                LineProblem::DuplicateUser {
                    user: "alice".into(),
                    first_line: 1,
                },
            ),
            (
                "ok:plain\nok:{SHA}x".to_owned(),
                2,
                LineProblem::DuplicateUser {
                    user: "ok".into(),
                    first_line: 1,
                },
            ),
        ];
        for (text, line, problem) in cases {
            let err = parse(&text).expect_err(&text);
            assert_eq!((err.line, &err.problem), (line, &problem), "{text}");
        }
        let err = parse(&format!("bob:{BCRYPT}\nalice:")).expect_err("empty hash");
        assert!(
            matches!(err.problem, LineProblem::InvalidHash { .. }),
            "{err}"
        );
        let err = parse(&format!("alice:{}", &BCRYPT[..40])).expect_err("truncated bcrypt");
        assert_eq!(err.line, 1);
        assert!(
            matches!(&err.problem, LineProblem::InvalidHash { user, .. } if user == "alice"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("line 1: user \"alice\": invalid bcrypt hash"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let err = Htpasswd::parse(b"# ok\nal\xffice:x\n").expect_err("not UTF-8");
        assert_eq!((err.line, err.problem), (2, LineProblem::NotUtf8));
    }

    #[test]
    fn colon_in_the_hash_part_stays_in_the_hash() {
        // The user ends at the first colon; the rest is the hash (here refused as unknown).
        let file = parse("carol:a:b").expect("valid");
        assert_eq!(file.refused()[0].user, "carol");
    }
}
