//! Tests of `password.rs`: which hashes parse, verify, are refused, and the dummy's shape.

use super::*;

// `htpasswd -bnB -C 4 alice secret`
const ALICE_BCRYPT: &str = "$2y$04$zYLrQZpk9bg5mHzJTqvEROOYSrqYHLOlXTYi3qdujEHodu0v7COzS";

#[test]
fn bcrypt_prefixes_are_accepted_and_verified() {
    for prefix in ["$2y$", "$2a$", "$2b$"] {
        let text = ALICE_BCRYPT.replacen("$2y$", prefix, 1);
        let hash = PasswordHash::parse(&text).expect("valid bcrypt");
        assert_eq!(hash.shape(), HashShape::Bcrypt { cost: 4 });
        assert!(hash.verify("secret"), "{prefix}");
        assert!(!hash.verify("Secret"), "{prefix}");
    }
}

#[test]
fn malformed_bcrypt_is_invalid_not_unsupported() {
    let salt_and_hash = &ALICE_BCRYPT[7..];
    for text in [
        format!("$2y$4${salt_and_hash}"),
        format!("$2y$03${salt_and_hash}"),
        format!("$2y$32${salt_and_hash}"),
        format!("$2y$04${}", &salt_and_hash[1..]),
        format!("$2y$04${salt_and_hash}!"),
        format!("$2y$04${}+", &salt_and_hash[1..]),
        "$2y$04".to_owned(),
        "$2y".to_owned(),
        "$2".to_owned(),
        format!("$2c$04${salt_and_hash}"),
    ] {
        let err = PasswordHash::parse(&text).expect_err(&text);
        assert!(
            matches!(
                err,
                HashError::Invalid {
                    scheme: "bcrypt",
                    ..
                }
            ),
            "{text}: {err}"
        );
    }
}

#[test]
fn an_empty_hash_is_invalid() {
    assert!(matches!(
        PasswordHash::parse(""),
        Err(HashError::Invalid { .. })
    ));
}

#[test]
fn other_schemes_are_named_and_refused() {
    let cases = [
        ("{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=", UnsupportedScheme::Sha1),
        (
            "$apr1$QjJchBIK$Ib/l9ALAZBr1abTwQRJ/n0",
            UnsupportedScheme::Apr1Md5,
        ),
        (
            "$2x$04$zYLrQZpk9bg5mHzJTqvEROOYSrqYHLOlXTYi3qdujEHodu0v7COzS",
            UnsupportedScheme::BcryptX,
        ),
        ("$6$salt$abcdef", UnsupportedScheme::Crypt),
        ("HJUvUQoPXMX2A", UnsupportedScheme::Crypt),
        ("secret", UnsupportedScheme::PlainOrUnknown),
    ];
    for (text, scheme) in cases {
        assert_eq!(
            PasswordHash::parse(text),
            Err(HashError::Unsupported(scheme)),
            "{text}"
        );
    }
}

#[test]
fn argon2_phc_strings_are_accepted_and_verified() {
    for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
        let shape = HashShape::Argon2 {
            algorithm,
            version: Version::V0x13,
            params: Params::new(64, 1, 1, Some(32)).expect("valid argon2 parameters"),
        };
        let hash = shape.dummy().expect("argon2 hash");
        assert_eq!(hash.shape(), shape);
        let PasswordHash::Argon2 { text, .. } = &hash else {
            panic!("not argon2: {hash:?}");
        };
        assert!(text.starts_with(&format!("${algorithm}$v=19$m=64,t=1,p=1$")));
        assert!(!hash.verify("anything"));
    }
    let err = PasswordHash::parse("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ").expect_err("no hash");
    assert!(
        matches!(
            err,
            HashError::Invalid {
                scheme: "argon2",
                ..
            }
        ),
        "{err}"
    );
    let err = PasswordHash::parse("$argon2q$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
        .expect_err("unknown variant");
    assert!(matches!(err, HashError::Invalid { .. }), "{err}");
}

#[test]
fn the_dummy_copies_the_most_expensive_shape() {
    let cheap = PasswordHash::parse(ALICE_BCRYPT).expect("valid");
    let dear = HashShape::Bcrypt { cost: 5 }.dummy().expect("bcrypt");
    let argon = HashShape::Argon2 {
        algorithm: Algorithm::Argon2id,
        version: Version::V0x13,
        params: Params::new(256, 2, 1, Some(32)).expect("valid"),
    }
    .dummy()
    .expect("argon2");
    let shape = HashShape::most_expensive([&cheap, &argon, &dear]).expect("non-empty");
    assert_eq!(shape, HashShape::Bcrypt { cost: 5 });
    assert_eq!(HashShape::most_expensive([&argon]), Some(argon.shape()));
    assert_eq!(HashShape::most_expensive([]), None);
    assert!(
        !format!("{dear:?}").contains("$2"),
        "Debug must not print the hash"
    );
}

#[test]
fn new_hashes_verify_and_have_the_expected_shape() {
    let bcrypt = PasswordHash::new_bcrypt("s3cret", 4).expect("bcrypt hashes");
    assert!(bcrypt.as_str().starts_with("$2y$04$"), "Apache's prefix");
    assert_eq!(bcrypt.shape(), HashShape::Bcrypt { cost: 4 });
    assert!(bcrypt.verify("s3cret") && !bcrypt.verify("s3creT"));
    let again = PasswordHash::new_bcrypt("s3cret", 4).expect("bcrypt hashes");
    assert_ne!(bcrypt.as_str(), again.as_str(), "a fresh salt each time");

    let argon = PasswordHash::new_argon2id("s3cret").expect("argon2 hashes");
    assert!(argon
        .as_str()
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(argon.verify("s3cret") && !argon.verify("s3creT"));
    assert!(PasswordHash::new_bcrypt("x", 3).is_err(), "cost below 4");
}
