//! Headers the edge adds to every answer, and the ones it owns on the way to the engine.

/// Sent on every response, whoever produced it.
pub const SECURITY_HEADERS: [(&str, &str); 2] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// Sent only when the certificate is a real one: HSTS with a self-signed certificate would lock
/// browsers out of a dev registry for a year.
pub const HSTS: (&str, &str) = ("strict-transport-security", "max-age=31536000");

/// Headers a client may not set: the edge alone speaks for who the client is.
pub const OWNED_BY_EDGE: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    crate::registry::api::FRONT_TOKEN_HEADER,
    crate::registry::api::FRONT_USER_HEADER,
];
