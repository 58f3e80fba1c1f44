//! Password hashes regapp accepts — bcrypt and argon2 — parsed once when the htpasswd file is read,
//! so a [`PasswordHash`] can only hold a hash we know how to verify. Also makes the dummy hash that
//! unknown users are checked against ([`HashShape::dummy`]), and new hashes for `regapp user`
//! ([`PasswordHash::new_bcrypt`], [`PasswordHash::new_argon2id`]).
//!
//! Owns no file I/O, caching or threading: [`PasswordHash::verify`] is CPU-heavy and blocking, and
//! the caller decides where it runs.

use std::fmt;

use argon2::password_hash::{PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

/// The costliest bcrypt regapp verifies. Every failed login and every unknown user costs one
/// verification at the file's highest cost, and a reload makes one dummy hash at it, so one
/// line above this could stall logins and reloads (cost 17, Apache's maximum, takes ~8 s here;
/// cost 31, days). Cost 12 takes ~0.25 s and each step doubles it.
pub const MAX_BCRYPT_COST: u32 = 14;
/// The costliest argon2 regapp verifies: 64 MiB of memory per verification (an `m=4194304`
/// line would take 4 GiB each), 10 passes and 8 lanes, above OWASP's recommendations (19–46
/// MiB, 1–5 passes, 1 lane).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
pub const MAX_ARGON2_PASSES: u32 = 10;
pub const MAX_ARGON2_LANES: u32 = 8;

/// A password hash of a supported scheme, checked for syntax when parsed.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$` or `$2b$`, cost 4 to [`MAX_BCRYPT_COST`]: what `htpasswd -B` writes.
    Bcrypt { text: String, cost: u32 },
    /// A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash` (also argon2i, argon2d).
    Argon2 {
        text: String,
        algorithm: Algorithm,
        version: Version,
        params: Params,
    },
}

/// Why a hash was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// A scheme htpasswd files may hold but regapp refuses (weak or unverifiable here).
    #[error("scheme {0} is not supported (use bcrypt: htpasswd -B)")]
    Unsupported(UnsupportedScheme),
    /// Looks like bcrypt or argon2, but is not a valid hash of that scheme.
    #[error("invalid {scheme} hash: {reason}")]
    Invalid {
        scheme: &'static str,
        reason: String,
    },
    /// A valid hash whose verification would cost more than regapp allows.
    #[error("{0}")]
    TooCostly(String),
}

/// Schemes found in htpasswd files that regapp refuses. Named so an operator knows what to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedScheme {
    /// `{SHA}`: unsalted SHA-1 (`htpasswd -s`).
    Sha1,
    /// `$apr1$`: Apache's iterated MD5 (`htpasswd -m`, its old default).
    Apr1Md5,
    /// `$2x$`: the bcrypt variant marking hashes from the buggy pre-2011 implementation.
    BcryptX,
    /// `$1$`, `$5$`, `$6$`, `$y$` or a 13-character DES crypt (`htpasswd -d`).
    Crypt,
    /// Anything else, usually a plain-text password (`htpasswd -p`).
    PlainOrUnknown,
}

impl fmt::Display for UnsupportedScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "{SHA} (unsalted SHA-1)",
            Self::Apr1Md5 => "$apr1$ (MD5)",
            Self::BcryptX => "$2x$ (buggy bcrypt variant)",
            Self::Crypt => "crypt",
            Self::PlainOrUnknown => "plain text or unknown",
        })
    }
}

const BCRYPT_ALPHABET: &str = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl PasswordHash {
    /// Parses the hash part of an htpasswd line. An empty hash, or one that starts like bcrypt but
    /// is cut short, is invalid rather than "unsupported": it is what a half-written or mangled
    /// line looks like, and it must fail the file instead of silently dropping the user.
    pub fn parse(text: &str) -> Result<Self, HashError> {
        if text.is_empty() {
            return Err(HashError::Invalid {
                scheme: "any",
                reason: "the hash is empty".to_owned(),
            });
        }
        if let Some(rest) = ["$2y$", "$2a$", "$2b$"]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
        {
            return parse_bcrypt(text, rest);
        }
        if text.starts_with("$argon2") {
            return parse_argon2(text);
        }
        if text.starts_with("$2") && !text.starts_with("$2x$") {
            return Err(HashError::Invalid {
                scheme: "bcrypt",
                reason: "the prefix must be $2y$, $2a$ or $2b$".to_owned(),
            });
        }
        Err(HashError::Unsupported(unsupported_scheme(text)))
    }

    /// Whether `password` matches. Blocking and deliberately slow (a bcrypt of cost 12 takes about
    /// 250 ms): call it from a blocking thread.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Self::Bcrypt { text, .. } => match bcrypt::verify(password, text) {
                Ok(matches) => matches,
                Err(e) => {
                    // Only a hash that passed parse() but has bad base64 padding bits gets here.
                    tracing::warn!(error = %e, "bcrypt verification failed");
                    false
                }
            },
            Self::Argon2 { text, .. } => match argon2::PasswordHash::new(text) {
                // The algorithm, version and parameters come from the PHC string itself.
                Ok(phc) => Argon2::default()
                    .verify_password(password.as_bytes(), &phc)
                    .is_ok(),
                Err(_) => false, // parse() already accepted this string; kept total anyway
            },
        }
    }

    /// A new bcrypt hash of `password` with a random salt, written `$2y$` as Apache's
    /// `htpasswd -B` writes it (so `htpasswd -v` verifies it). Blocking: cost 12 takes ~250 ms.
    pub fn new_bcrypt(password: &str, cost: u32) -> Result<Self, HashError> {
        check_bcrypt_cost(cost)?;
        let parts = bcrypt::hash_with_result(password, cost).map_err(|e| HashError::Invalid {
            scheme: "bcrypt",
            reason: e.to_string(),
        })?;
        Self::parse(&parts.format_for_version(bcrypt::Version::TwoY))
    }

    /// A new argon2id PHC string of `password` with a random salt and the `argon2` crate's
    /// default parameters (19 MiB, 2 passes, 1 lane: OWASP's minimum recommendation).
    pub fn new_argon2id(password: &str) -> Result<Self, HashError> {
        let invalid = |e: argon2::password_hash::Error| HashError::Invalid {
            scheme: "argon2",
            reason: e.to_string(),
        };
        let salt = SaltString::encode_b64(&random_bytes()).map_err(invalid)?;
        let text = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
            .hash_password(password.as_bytes(), &salt)
            .map_err(invalid)?
            .to_string();
        Self::parse(&text)
    }

    /// The hash as it is written in the htpasswd file.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Bcrypt { text, .. } | Self::Argon2 { text, .. } => text,
        }
    }

    /// The scheme and cost parameters, without the salt and hash.
    pub fn shape(&self) -> HashShape {
        match self {
            Self::Bcrypt { cost, .. } => HashShape::Bcrypt { cost: *cost },
            Self::Argon2 {
                algorithm,
                version,
                params,
                ..
            } => HashShape::Argon2 {
                algorithm: *algorithm,
                version: *version,
                params: params.clone(),
            },
        }
    }
}

/// Never prints the hash: only its scheme and cost.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({:?})", self.shape())
    }
}

fn parse_bcrypt(text: &str, rest: &str) -> Result<PasswordHash, HashError> {
    let invalid = |reason: &str| HashError::Invalid {
        scheme: "bcrypt",
        reason: reason.to_owned(),
    };
    let (cost, salt_and_hash) = rest
        .split_once('$')
        .ok_or_else(|| invalid("no `$` after the cost"))?;
    if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the cost must be two digits"));
    }
    let cost: u32 = cost.parse().map_err(|_| invalid("unreadable cost"))?;
    if !(4..=31).contains(&cost) {
        return Err(invalid("the cost must be between 04 and 31"));
    }
    if salt_and_hash.len() != 53 || !salt_and_hash.chars().all(|c| BCRYPT_ALPHABET.contains(c)) {
        return Err(invalid(
            "salt and hash must be 53 characters of bcrypt's base64",
        ));
    }
    check_bcrypt_cost(cost)?;
    Ok(PasswordHash::Bcrypt {
        text: text.to_owned(),
        cost,
    })
}

fn parse_argon2(text: &str) -> Result<PasswordHash, HashError> {
    let invalid = |reason: String| HashError::Invalid {
        scheme: "argon2",
        reason,
    };
    let phc = argon2::PasswordHash::new(text).map_err(|e| invalid(e.to_string()))?;
    let algorithm = Algorithm::try_from(phc.algorithm).map_err(|e| invalid(e.to_string()))?;
    let version = match phc.version {
        Some(v) => Version::try_from(v).map_err(|e| invalid(e.to_string()))?,
        None => Version::default(),
    };
    let params = Params::try_from(&phc).map_err(|e| invalid(e.to_string()))?;
    let salt_len = phc.salt.map_or(0, |s| s.len());
    if salt_len == 0 || phc.hash.is_none() {
        return Err(invalid("a salt and a hash are required".to_owned()));
    }
    for (what, value, max) in [
        ("memory m", params.m_cost(), MAX_ARGON2_MEMORY_KIB),
        ("passes t", params.t_cost(), MAX_ARGON2_PASSES),
        ("lanes p", params.p_cost(), MAX_ARGON2_LANES),
    ] {
        if value > max {
            return Err(HashError::TooCostly(format!(
                "argon2 {what}={value} is above regapp's maximum of {max} \
                 (regapp user passwd --argon2 writes m=19456,t=2,p=1)"
            )));
        }
    }
    Ok(PasswordHash::Argon2 {
        text: text.to_owned(),
        algorithm,
        version,
        params,
    })
}

fn check_bcrypt_cost(cost: u32) -> Result<(), HashError> {
    if cost > MAX_BCRYPT_COST {
        return Err(HashError::TooCostly(format!(
            "bcrypt cost {cost} is above regapp's maximum of {MAX_BCRYPT_COST} \
             (each step doubles a login's time; htpasswd -B -C 12 is plenty)"
        )));
    }
    Ok(())
}

fn unsupported_scheme(text: &str) -> UnsupportedScheme {
    let is_crypt_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    if text.starts_with("{SHA}") {
        UnsupportedScheme::Sha1
    } else if text.starts_with("$apr1$") {
        UnsupportedScheme::Apr1Md5
    } else if text.starts_with("$2x$") {
        UnsupportedScheme::BcryptX
    } else if ["$1$", "$5$", "$6$", "$y$"]
        .iter()
        .any(|p| text.starts_with(p))
        || (text.len() == 13 && text.chars().all(is_crypt_char))
    {
        UnsupportedScheme::Crypt
    } else {
        UnsupportedScheme::PlainOrUnknown
    }
}

/// A hash's scheme and cost, without salt and hash: what the dummy for unknown users must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashShape {
    Bcrypt {
        cost: u32,
    },
    Argon2 {
        algorithm: Algorithm,
        version: Version,
        params: Params,
    },
}

/// A dummy hash could not be made (only on a failing random source or an impossible parameter).
#[derive(Debug, thiserror::Error)]
#[error("cannot make the dummy hash for unknown users: {0}")]
pub struct DummyError(String);

impl HashShape {
    /// The shape whose verification costs the most, to check unknown users against. bcrypt ranks
    /// above argon2 when both appear, since `htpasswd` writes bcrypt and argon2 lines are rarer
    /// hand-made additions; within a scheme the higher cost wins (argon2: memory × passes).
    pub fn most_expensive<'a>(shapes: impl IntoIterator<Item = &'a PasswordHash>) -> Option<Self> {
        shapes
            .into_iter()
            .map(PasswordHash::shape)
            .max_by_key(HashShape::rank)
    }

    fn rank(&self) -> (u8, u64) {
        match self {
            Self::Bcrypt { cost } => (1, u64::from(*cost)),
            Self::Argon2 { params, .. } => {
                (0, u64::from(params.m_cost()) * u64::from(params.t_cost()))
            }
        }
    }

    /// A hash of a random password with this shape: verifying anything against it takes as long
    /// as verifying against a real entry of the same shape, and never succeeds in practice.
    pub fn dummy(&self) -> Result<PasswordHash, DummyError> {
        let password = random_bytes();
        let text = match self {
            Self::Bcrypt { cost } => {
                bcrypt::hash(password, *cost).map_err(|e| DummyError(e.to_string()))?
            }
            Self::Argon2 {
                algorithm,
                version,
                params,
            } => {
                let salt = SaltString::encode_b64(&random_bytes())
                    .map_err(|e| DummyError(e.to_string()))?;
                Argon2::new(*algorithm, *version, params.clone())
                    .hash_password(&password, &salt)
                    .map_err(|e| DummyError(e.to_string()))?
                    .to_string()
            }
        };
        PasswordHash::parse(&text).map_err(|e| DummyError(e.to_string()))
    }
}

/// 16 bytes from the operating system's random source. uuid's v4 generator is that source
/// (getrandom) with 6 fixed bits, which is plenty for salts and throwaway passwords.
pub(crate) fn random_bytes() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

#[cfg(test)]
mod tests;
