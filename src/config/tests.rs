use super::*;

#[test]
fn the_shipped_config_is_valid() {
    let text = include_str!("../../conf/regapp.toml");
    let settings = Settings::parse(text, "conf/regapp.toml").unwrap();
    assert_eq!(settings.storage.root, PathBuf::from(DEFAULT_ROOT));
    assert!(settings.storage.delete_enabled);
    assert_eq!(settings.engine.listen.to_string(), DEFAULT_LISTEN);
    let edge = settings.edge.expect("the shipped config runs the edge");
    assert_eq!(edge.hostname, "registry.example.com");
    assert_eq!(edge.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn an_edge_needs_a_hostname_and_acme_is_not_offered_yet() {
    let text = "[edge]\nhttps_listen = \"127.0.0.1:1\"\n\n[tls]\nmode = \"acme\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let keys: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.key.clone().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            (Some(1), "edge.hostname".to_owned()),
            (Some(5), "tls.mode".to_owned())
        ]
    );
    let errors = Settings::parse("[edge]\nshutdown_grace = \"soon\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(errors[0].key.as_deref(), Some("edge.shutdown_grace"));
}

#[test]
fn an_empty_file_means_defaults() {
    let settings = Settings::parse("", "x").unwrap();
    assert_eq!(
        settings.engine.max_manifest_bytes,
        DEFAULT_MAX_MANIFEST_BYTES
    );
}

#[test]
fn every_bad_key_is_reported_with_its_line() {
    let text = "\
[storage]
root = \"/data\"
delete_enabled = \"yes\"
colour = 3

[engine]
listen = \"not an address\"

[nonsense]
x = 1
";
    let errors = Settings::parse(text, "regapp.toml").unwrap_err().0;
    let found: Vec<(Option<usize>, Option<&str>)> =
        errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        found,
        [
            (Some(3), Some("storage.delete_enabled")),
            (Some(4), Some("storage.colour")),
            (Some(7), Some("engine.listen")),
            (Some(9), Some("nonsense")),
        ]
    );
    assert!(
        errors[1].message.contains("unknown field"),
        "{}",
        errors[1].message
    );
    assert!(errors[0]
        .to_string()
        .starts_with("regapp.toml:3: storage.delete_enabled: "));
}

#[test]
fn syntax_errors_name_the_line() {
    let errors = Settings::parse("[storage]\nroot = \n", "f.toml")
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(2));
}
