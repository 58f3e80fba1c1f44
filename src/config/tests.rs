use std::time::Duration;

use super::*;
use crate::certs::acme::{AcmeOptions, LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::metrics::DEFAULT_METRICS_LISTEN;
use crate::ops::logging::LogFormat;
use crate::registry::gc::RetentionRule;
use crate::registry::store::DEFAULT_MANIFEST_MAX_BYTES;
use crate::storage::s3::S3Settings;
use crate::storage::DEFAULT_ROOT;
use ipnet::IpNet;

/// Each error's line and key, in order.
fn lines_and_keys(errors: &[ConfigError]) -> Vec<(Option<usize>, String)> {
    errors
        .iter()
        .map(|e| (e.line, e.key.clone().unwrap()))
        .collect()
}

#[test]
fn the_shipped_config_is_valid() {
    let text = include_str!("../../conf/regapp.toml");
    let settings = Settings::parse(text, "conf/regapp.toml").unwrap();
    assert_eq!(settings.storage.root, PathBuf::from(DEFAULT_ROOT));
    assert!(settings.engine.store.delete_enabled);
    assert_eq!(settings.engine.listen.to_string(), DEFAULT_LISTEN);
    let edge = settings.edge.expect("the shipped config runs the edge");
    assert_eq!(edge.hostname, "registry.example.com");
    assert_eq!(edge.shutdown_grace, Duration::from_secs(30));
    assert_eq!(settings.metrics, MetricsSettings::default());
    assert_eq!(settings.log, LogSettings::default());
    // What the Debian package installs must start with no edits (packaging/README.md).
    assert_eq!(
        edge.tls,
        TlsSettings::SelfSigned {
            state_dir: PathBuf::from("/var/lib/regapp/tls")
        }
    );
    assert_eq!(edge.auth.htpasswd, PathBuf::from("/etc/regapp/htpasswd"));
}

#[test]
fn an_edge_needs_a_hostname() {
    let text = "[edge]\nhttps_listen = \"127.0.0.1:1\"\n\n[tls]\nmode = \"acme\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let keys = lines_and_keys(&errors);
    assert_eq!(keys, [(Some(1), "edge.hostname".to_owned())]);
    let errors = Settings::parse("[edge]\nshutdown_grace = \"soon\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(errors[0].key.as_deref(), Some("edge.shutdown_grace"));
}

fn acme_of(text: &str) -> AcmeOptions {
    let settings = Settings::parse(text, "f").unwrap();
    match settings.edge.unwrap().tls {
        TlsSettings::Acme(acme) => acme,
        other => panic!("not acme: {other:?}"),
    }
}

#[test]
fn acme_defaults_to_lets_encrypt_for_the_hostname() {
    let acme = acme_of("[edge]\nhostname = \"r.example.com\"\n[tls]\nmode = \"acme\"\n");
    assert_eq!(acme.directory, LETSENCRYPT);
    assert_eq!(acme.domains, ["r.example.com"]);
    assert_eq!(acme.state_dir, PathBuf::from("/var/lib/regapp/acme"));
    assert_eq!((acme.ca_root, acme.eab, acme.profile), (None, None, None));
    assert!(acme.contact.is_empty());
}

#[test]
fn acme_reads_every_key_and_expands_shortcuts() {
    let acme = acme_of(
        "[edge]\nhostname = \"r.example.com\"\n[tls]\nmode = \"acme\"\n[acme]\n\
         directory = \"letsencrypt-staging\"\ncontact = [\"mailto:ops@example.com\"]\n\
         domains = [\"r.example.com\", \"registry.example.com\"]\nca_root = \"/etc/ca.pem\"\n\
         eab_kid = \"kid-1\"\neab_hmac_key = \"aGVsbG8td29ybGQ\"\nprofile = \"shortlived\"\n\
         state_dir = \"/srv/acme\"\n",
    );
    assert_eq!(acme.directory, LETSENCRYPT_STAGING);
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(acme.domains, ["r.example.com", "registry.example.com"]);
    assert_eq!(acme.ca_root, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(
        acme.eab,
        Some(("kid-1".to_owned(), b"hello-world".to_vec()))
    );
    assert_eq!(acme.profile.as_deref(), Some("shortlived"));
    assert_eq!(acme.state_dir, PathBuf::from("/srv/acme"));
    // The shipped file's empty strings mean "not set".
    let acme = acme_of(
        "[edge]\nhostname = \"r.example.com\"\n[tls]\nmode = \"acme\"\n[acme]\n\
         directory = \"https://acme.internal/directory\"\ndomains = []\nca_root = \"\"\n\
         eab_kid = \"\"\neab_hmac_key = \"\"\nprofile = \"\"\n",
    );
    assert_eq!(acme.directory, "https://acme.internal/directory");
    assert_eq!(acme.domains, ["r.example.com"]);
    assert_eq!((acme.ca_root, acme.eab, acme.profile), (None, None, None));
}

#[test]
fn acme_mistakes_are_reported_with_key_and_line() {
    let text = "[edge]\nhostname = \"r.example.com\"\n[tls]\nmode = \"acme\"\n[acme]\n\
                directory = \"http://acme.internal/dir\"\ncontact = [\"ops@example.com\"]\n\
                domains = [\"*.example.com\"]\neab_kid = \"kid-1\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let keys = lines_and_keys(&errors);
    assert_eq!(
        keys,
        [
            (Some(6), "acme.directory".to_owned()),
            (Some(7), "acme.contact".to_owned()),
            (Some(8), "acme.domains".to_owned()),
            (Some(9), "acme.eab_kid".to_owned()),
        ]
    );
    assert!(errors[2].message.contains("DNS-01"), "{}", errors[2]);
    let errors = Settings::parse("[acme]\nemail = \"x\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(errors[0].key.as_deref(), Some("acme.email"));
    assert_eq!(errors[0].line, Some(2));
    let errors = Settings::parse(
        "[edge]\nhostname = \"r\"\n[tls]\nmode = \"acme\"\n[acme]\neab_kid = \"k\"\neab_hmac_key = \"not base64!\"\n",
        "f",
    )
    .unwrap_err()
    .0;
    assert_eq!(errors[0].key.as_deref(), Some("acme.eab_hmac_key"));
    assert_eq!(errors[0].line, Some(7));
}

#[test]
fn an_empty_file_means_defaults() {
    let settings = Settings::parse("", "x").unwrap();
    assert_eq!(
        settings.engine.store.manifest_max_bytes,
        DEFAULT_MANIFEST_MAX_BYTES
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

#[test]
fn gc_defaults_and_every_key() {
    let defaults = Settings::parse("", "f").unwrap().gc;
    assert_eq!(defaults, GcPolicy::default());
    assert_eq!(defaults.interval, Some(Duration::from_secs(86_400)));
    let text = r#"
[gc]
interval = "0s"
grace = "0s"
delete_untagged = true
upload_max_age = "2d"

[[retention]]
repositories = "ci/**"
keep_last = 10
keep_tags = "^v[0-9]+"
older_than = "30d"

[[retention]]
repositories = "*"
older_than = "1h"
"#;
    let gc = Settings::parse(text, "f").unwrap().gc;
    assert_eq!(gc.interval, None);
    assert_eq!(gc.grace, Duration::ZERO);
    assert!(gc.delete_untagged);
    assert_eq!(gc.upload_max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(
        gc.retention[0],
        RetentionRule::new(
            crate::auth::access::RepoGlob::parse("ci/**").unwrap(),
            Some(10),
            Some(regex::Regex::new("^v[0-9]+").unwrap()),
            Some(Duration::from_secs(30 * 86_400)),
        )
    );
    assert_eq!(gc.retention[1].older_than, Some(Duration::from_secs(3600)));
    assert_eq!(
        Settings::parse("[gc]\ninterval = \"\"\n", "f")
            .unwrap()
            .gc
            .interval,
        None
    );
}

#[test]
fn gc_and_retention_errors_name_the_line_and_key() {
    let keys = |text: &str| -> Vec<(Option<usize>, String)> {
        Settings::parse(text, "f")
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.line, e.key.unwrap()))
            .collect()
    };
    assert_eq!(
        keys("[gc]\ngrace = \"soon\"\ninterval = 5\ncolour = \"red\"\n"),
        [
            (Some(2), "gc.grace".to_owned()),
            (Some(3), "gc.interval".to_owned()),
            (Some(4), "gc.colour".to_owned())
        ]
    );
    let text = "[[retention]]\nrepositories = \"a/**\"\nkeep_last = 1\n\n[[retention]]\nrepositories = \"b\"\nkeep_last = \"ten\"\nkeep = 1\n";
    assert_eq!(
        keys(text),
        [
            (Some(7), "retention[1].keep_last".to_owned()),
            (Some(8), "retention[1].keep".to_owned())
        ]
    );
    let text = "[[retention]]\nrepositories = \"a\"\nkeep_last = 1\nkeep_tags = \"(unclosed\"\n\n[[retention]]\nkeep_last = 2\n";
    assert_eq!(
        keys(text),
        [
            (Some(4), "retention[0].keep_tags".to_owned()),
            (Some(6), "retention[1].repositories".to_owned())
        ]
    );
}

#[test]
fn metrics_and_log_have_working_defaults_and_typed_values() {
    let settings = Settings::parse("", "f").unwrap();
    assert_eq!(settings.metrics.listen.to_string(), DEFAULT_METRICS_LISTEN);
    assert!(settings.metrics.allow.is_empty());
    assert_eq!(settings.log, LogSettings::default());

    let text = "[metrics]\nlisten = \"0.0.0.0:9200\"\nallow = [\"10.0.0.0/8\"]\n\
                [log]\nlevel = \"info,regapp::auth::access=warn\"\nformat = \"json\"\n";
    let settings = Settings::parse(text, "f").unwrap();
    assert_eq!(settings.metrics.listen.to_string(), "0.0.0.0:9200");
    assert_eq!(
        settings.metrics.allow,
        ["10.0.0.0/8".parse::<IpNet>().unwrap()]
    );
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn bad_metrics_and_log_values_are_each_named_with_their_line() {
    let text = "[metrics]\nlisten = \"nowhere\"\n[log]\nformat = \"xml\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let keys = lines_and_keys(&errors);
    assert_eq!(
        keys,
        [
            (Some(2), "metrics.listen".to_owned()),
            (Some(4), "log.format".to_owned())
        ]
    );
    let errors = Settings::parse("[log]\nlevel = \"info,=[\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(errors[0].key.as_deref(), Some("log.level"), "{errors:?}");
    assert_eq!(errors[0].line, Some(2));
    // Fuzzing found these: a non-ASCII filter made tracing-subscriber's parser panic, and a
    // field value compiled as a regular expression took minutes. Both are errors, at once.
    let errors = Settings::parse("[log]\nlevel = \"\u{74b}[x]{s=0}\"\n", "f")
        .unwrap_err()
        .0;
    assert!(errors[0].message.contains("not ASCII"), "{errors:?}");
    let fields = "[log]\nlevel = \"info,[span{field=a.*b+c]}]\"\n";
    let _ = Settings::parse(fields, "f");
}

#[test]
fn access_rules_are_read_in_order_with_groups() {
    let text = "[auth]\nanonymous_pull = true\n\n[[auth.groups]]\nname = \"ci\"\n\
                members = [\"ci-bot\", \"release-bot\"]\n\n[[access]]\n\
                repositories = \"team-a/**\"\nusers = [\"alice\"]\nactions = [\"pull\", \"push\"]\n\n\
                [[access]]\nrepositories = \"**\"\nusers = [\"@ci\", \"anonymous\"]\n\
                actions = [\"pull\", \"push\", \"delete\"]\n";
    let access = Settings::parse(text, "f").unwrap().access;
    use crate::auth::access::Action;
    assert!(access.anonymous_pull());
    assert_eq!(access.rules().len(), 2);
    assert_eq!(access.rules()[0].origin, "f:8");
    assert!(access.allows(Some("alice"), "team-a/app", Action::Push));
    assert!(access.allows(Some("release-bot"), "x", Action::Delete));
    assert!(access.allows(None, "x", Action::Pull));
    assert!(!access.allows(Some("alice"), "x", Action::Pull));
    // No rules at all: today's behaviour.
    let plain = Settings::parse("", "f").unwrap().access;
    assert!(plain.rules().is_empty() && !plain.anonymous_pull());
}

#[test]
fn access_mistakes_are_reported_with_key_and_line() {
    let text = "[auth]\nanonymous_pull = true\n\n[[auth.groups]]\nname = \"ci\"\nmembers = [\"*\"]\n\n\
                [[access]]\nrepositories = \"team-a/**\"\nusers = [\"@nobody\"]\nactions = [\"pull\"]\n\n\
                [[access]]\nrepositories = \"Team/[x]\"\nusers = [\"alice\"]\nactions = [\"fly\"]\n\n\
                [[access]]\nusers = [\"alice\"]\nactions = [\"pull\"]\n\n\
                [[access]]\nrepositories = \"**\"\nusers = [\"*\"]\nactions = [\"pull\"]\n\n\
                [[access]]\nrepositories = \"team-b/**\"\nusers = [\"bob\"]\nactions = [\"push\"]\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let found = lines_and_keys(&errors);
    assert_eq!(
        found,
        [
            (Some(2), "auth.anonymous_pull".to_owned()),
            (Some(6), "auth.groups[1].members".to_owned()),
            (Some(10), "access[1].users".to_owned()),
            (Some(14), "access[2].repositories".to_owned()),
            (Some(16), "access[2].actions".to_owned()),
            (Some(18), "access[3].repositories".to_owned()),
            (Some(28), "access[5].repositories".to_owned()),
        ],
        "{errors:#?}"
    );
    let shadowed = &errors[6];
    assert!(
        shadowed.message.contains("rule 4 (f:22)"),
        "{}",
        shadowed.message
    );
    assert!(errors[0]
        .to_string()
        .starts_with("f:2: auth.anonymous_pull: "));
}

/// Values `serve` could not use are errors with their line and key, not surprises at start:
/// an empty storage root (the store would land in the working directory), a manifest limit
/// of 0, a hostname that is no host name, zero timeouts and caps, two listeners on one address.
#[test]
fn values_serve_cannot_use_are_errors_with_line_and_key() {
    let text = "[storage]\nroot = \"\"\n\
                [engine]\nlisten = \"127.0.0.1:7000\"\nmax_manifest_bytes = 0\n\
                [edge]\nhostname = \"a b/c\"\nidle_timeout = \"0s\"\nhandshake_timeout = \"0s\"\n\
                max_connections = 0\nmax_connections_per_client = 0\n\
                [tls]\nmode = \"self-signed\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    let keys = lines_and_keys(&errors);
    assert_eq!(
        keys,
        [
            (Some(2), "storage.root".to_owned()),
            (Some(5), "engine.max_manifest_bytes".to_owned()),
            (Some(7), "edge.hostname".to_owned()),
            (Some(8), "edge.idle_timeout".to_owned()),
            (Some(9), "edge.handshake_timeout".to_owned()),
            (Some(10), "edge.max_connections".to_owned()),
            (Some(11), "edge.max_connections_per_client".to_owned()),
        ],
        "{errors:?}"
    );
    let clash = "[engine]\nlisten = \"127.0.0.1:7000\"\n[metrics]\nlisten = \"127.0.0.1:7000\"\n";
    let errors = Settings::parse(clash, "f").unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, Some(4));
    assert_eq!(errors[0].key.as_deref(), Some("metrics.listen"));
    assert!(errors[0].message.contains("engine.listen"), "{errors:?}");
    // One listener on every address clashes with one on loopback at the same port.
    let wildcard = "[engine]\nlisten = \"0.0.0.0:7001\"\n[metrics]\nlisten = \"127.0.0.1:7001\"\n";
    assert!(Settings::parse(wildcard, "f").is_err());
    // Port 0 (pick one) never clashes; names with digits, hyphens and dots are host names.
    let fine = "[engine]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
                [edge]\nhostname = \"registry-1.example.com\"\n[tls]\nmode = \"self-signed\"\n";
    Settings::parse(fine, "f").unwrap();
}

/// `backend = "s3"` with `[storage.s3]`: the settings the driver gets, the credentials from an
/// AWS credentials file, and none of them in the printed settings.
#[test]
fn an_s3_backend_is_read_with_its_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("s3-credentials");
    std::fs::write(
        &credentials,
        "[other]\naws_access_key_id = no\n[default]\naws_access_key_id = AKID\n\
         aws_secret_access_key = s3cr3t\n",
    )
    .unwrap();
    let text = format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"registry\"\n\
         endpoint = \"http://127.0.0.1:8333\"\nprefix = \"/r\"\ncredentials_file = {credentials:?}\n"
    );
    let settings = Settings::parse(&text, "f").unwrap();
    assert_eq!(
        settings.storage.backend,
        Backend::S3(S3Settings {
            bucket: "registry".to_owned(),
            endpoint: "http://127.0.0.1:8333".to_owned(),
            prefix: "/r".to_owned(),
            access_key_id: Some("AKID".to_owned()),
            secret_access_key: Some("s3cr3t".to_owned()),
            spool: std::path::Path::new(crate::storage::DEFAULT_ROOT).join("s3-spool"),
            ..S3Settings::default()
        })
    );
    let printed = settings.to_string();
    assert!(
        printed.contains("storage.s3 = http://127.0.0.1:8333/registry"),
        "{printed}"
    );
    assert!(
        !printed.contains("s3cr3t") && !printed.contains("AKID"),
        "{printed}"
    );
}

#[test]
fn s3_mistakes_are_errors_with_line_and_key() {
    let text = "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"127.0.0.1:8333\"\n\
                part_size = 1024\ncredentials_file = \"/nonexistent/creds\"\n";
    let errors = Settings::parse(text, "f").unwrap_err().0;
    assert_eq!(
        lines_and_keys(&errors),
        [
            (Some(3), "storage.s3".to_owned()),
            (Some(4), "storage.s3.endpoint".to_owned()),
            (Some(5), "storage.s3.part_size".to_owned()),
            (Some(6), "storage.s3.credentials_file".to_owned()),
        ],
        "{errors:#?}"
    );
    let errors = Settings::parse("[storage]\nbackend = \"gcs\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(
        lines_and_keys(&errors),
        [(Some(2), "storage.backend".to_owned())]
    );
    let errors = Settings::parse("[storage.s3]\nbucket = \"b\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(
        errors[0].key.as_deref(),
        Some("storage.backend"),
        "{errors:?}"
    );
}

#[test]
fn a_node_is_named_by_its_host_unless_named_in_cluster() {
    let settings = Settings::parse("", "f").unwrap();
    assert_eq!(settings.cluster.node, crate::cluster::host_name());
    assert_eq!(
        settings.cluster.clock_skew,
        std::time::Duration::from_secs(10)
    );
    let text = "[cluster]\nnode = \"n1.eu-west\"\nclock_skew = \"2s\"\n";
    let settings = Settings::parse(text, "f").unwrap();
    assert_eq!(settings.cluster.node, "n1.eu-west");
    assert_eq!(settings.gc.clock_skew, std::time::Duration::from_secs(2));
    assert!(settings.to_string().contains("cluster.node = n1.eu-west"));
    let errors = Settings::parse("\n[cluster]\nnode = \"n 1\"\n", "f")
        .unwrap_err()
        .0;
    assert_eq!(
        lines_and_keys(&errors),
        [(Some(3), "cluster.node".to_owned())],
        "{errors:?}"
    );
}

#[test]
fn mirrors_are_read_with_their_defaults_and_limits() {
    let text = r#"
[[mirror]]
name = "dockerhub"
url = "https://registry-1.docker.io/"
namespace = "docker.io"
default = true
username = "me"
password_file = "/etc/regapp/hub-password"
max_bytes = "50GiB"
max_unused = "30d"

[[mirror]]
name = "ghcr"
url = "https://ghcr.io"
prefix = "gh"
tag_ttl = "1m"
max_concurrent = 2
"#;
    let settings = Settings::parse(text, "test").unwrap();
    let [hub, ghcr] = &settings.engine.mirrors[..] else {
        panic!("two mirrors: {:?}", settings.engine.mirrors)
    };
    assert_eq!(hub.upstream.url, "https://registry-1.docker.io");
    assert_eq!(hub.prefix, "dockerhub", "the prefix defaults to the name");
    assert_eq!(hub.namespace.as_deref(), Some("docker.io"));
    assert!(hub.default && !ghcr.default);
    assert_eq!(hub.tag_ttl, crate::registry::mirror::DEFAULT_TAG_TTL);
    assert_eq!(hub.max_bytes, Some(50 << 30));
    assert_eq!(hub.max_unused, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(hub.upstream.username.as_deref(), Some("me"));
    assert_eq!(
        (
            ghcr.prefix.as_str(),
            ghcr.tag_ttl,
            ghcr.upstream.max_concurrent
        ),
        ("gh", Duration::from_secs(60), 2)
    );
    // The collector gets each mirror's limits.
    let caches: Vec<_> = settings
        .gc
        .caches
        .iter()
        .map(|c| (&c.prefix[..], c.max_bytes))
        .collect();
    assert_eq!(caches, [("dockerhub", Some(50 << 30)), ("gh", None)]);
}

#[test]
fn mirror_mistakes_are_errors_with_line_and_key() {
    let text = "[[mirror]]\nname = \"a\"\nurl = \"https://a\"\ndefault = true\n\n\
                [[mirror]]\nname = \"b\"\nurl = \"https://b/v2\"\nprefix = \"a\"\ndefault = true\n";
    let errors = Settings::parse(text, "test").unwrap_err().0;
    assert_eq!(
        lines_and_keys(&errors),
        [
            (Some(8), "mirror[1].url".to_owned()),
            (Some(9), "mirror[1].prefix".to_owned()),
            (Some(10), "mirror[1].default".to_owned()),
        ]
    );
}

#[test]
fn immutable_rules_are_read_and_their_mistakes_named() {
    let text = "[[immutable]]\ntags = \"^v[0-9]+$\"\n\n[[immutable]]\nrepositories = \"prod/**\"\ntags = \".*\"\n";
    let settings = Settings::parse(text, "test").unwrap();
    let immutable = &settings.engine.store.immutable;
    assert_eq!(immutable.rule_for("team/app", "v2").map(|r| r.0), Some(1));
    assert_eq!(
        immutable.rule_for("prod/app", "latest").map(|r| r.0),
        Some(2)
    );
    assert!(immutable.rule_for("team/app", "latest").is_none());

    let text = "[[immutable]]\nrepositories = \"team/**\"\n\n[[immutable]]\ntags = \"(\"\n";
    let errors = Settings::parse(text, "test").unwrap_err().0;
    assert_eq!(
        lines_and_keys(&errors),
        [
            // A missing key is reported at its table's header.
            (Some(1), "immutable[0].tags".to_owned()),
            (Some(5), "immutable[1].tags".to_owned()),
        ]
    );
}
