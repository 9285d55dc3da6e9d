//! Loading the configuration: defaults, file, environment and flags.

use super::*;
use std::collections::HashMap;

fn load(env: &[(&str, &str)], overrides: Overrides) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_from(&overrides, |name| env.get(name).cloned())
}

#[test]
fn defaults_match_the_spec() {
    let config = load(&[], Overrides::default()).unwrap();
    assert_eq!(
        config.database,
        DatabaseUrl::Sqlite {
            path: "data/hookrelay.db".into()
        }
    );
    assert_eq!(config.listen, "0.0.0.0:8080");
    assert_eq!(config.retry, RetryPolicy::default());
    assert_eq!(config.lease, Duration::from_secs(30));
    assert_eq!(config.max_body, 1024 * 1024);
    assert_eq!(config.log_filter, "info");
    assert_eq!(config.retention, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(config.dead_retention, None);
    assert!(config.migrate_on_start);
}

#[test]
fn settings_that_would_be_ignored_in_silence_are_refused_or_warned_about() {
    // A bare word is a target to tracing: "verbose" would silence everything.
    let error = load(&[("HOOKRELAY_LOG", "verbose")], Overrides::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("HOOKRELAY_LOG") && error.contains("not a level"),
        "{error}"
    );
    for good in [
        "debug",
        "warn,hookrelay=debug",
        "hookrelay::worker=trace",
        "OFF",
    ] {
        assert!(
            load(&[("HOOKRELAY_LOG", good)], Overrides::default()).is_ok(),
            "{good}"
        );
    }
    let error = load(
        &[
            ("HOOKRELAY_REQUEST_TIMEOUT", "10s"),
            ("HOOKRELAY_BODY_READ_TIMEOUT", "30s"),
        ],
        Overrides::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("body_read_timeout"), "{error}");
    let warnings = unknown_variables(
        [
            "HOOKRELAY_LEAS",
            "HOOKRELAY_LEASE",
            "HOOKRELAY_TEST_POSTGRES",
            "HOOKRELAY_SOMETHING_ELSE_ENTIRELY",
            "PATH",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("did you mean HOOKRELAY_LEASE?"),
        "{warnings:?}"
    );
    assert!(!warnings[1].contains("did you mean"), "{warnings:?}");
}

#[test]
fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookrelay.toml");
    std::fs::write(
        &file,
        "database = \"sqlite://file.db\"\nmax_attempts = 7\nlease = \"1m\"\nretry_jitter = 0\n",
    )
    .unwrap();
    let overrides = Overrides {
        config_file: Some(file),
        database: Some("sqlite://flag.db".into()),
        ..Overrides::default()
    };
    let config = load(&[("HOOKRELAY_MAX_ATTEMPTS", "3")], overrides).unwrap();
    assert_eq!(
        config.database,
        DatabaseUrl::Sqlite {
            path: "flag.db".into()
        }
    );
    assert_eq!(config.retry.max_attempts, 3);
    assert_eq!(config.retry.jitter, 0.0);
    assert_eq!(config.lease, Duration::from_secs(60));
}

#[test]
fn errors_name_the_setting_and_origin() {
    let err = load(&[("HOOKRELAY_LEASE", "soon")], Overrides::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("lease"), "{text}");
    assert!(text.contains("HOOKRELAY_LEASE"), "{text}");

    let err = load(&[("HOOKRELAY_MAX_ATTEMPTS", "0")], Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("at least 1"));

    let err = load(&[("HOOKRELAY_DATABASE", "mysql://x")], Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("sqlite://"));
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_attempt = 3\n").unwrap();
    let overrides = Overrides {
        config_file: Some(file),
        ..Overrides::default()
    };
    let err = load(&[], overrides).unwrap_err();
    assert!(err.to_string().contains("max_attempt"), "{err}");
}

#[test]
fn sources_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookrelay.toml");
    std::fs::write(
        &file,
        "accept_unknown_sources = false\n[sources.github]\nverify = \"github\"\nsecret = \"${GH_SECRET}\"\n",
    )
    .unwrap();
    let overrides = Overrides {
        config_file: Some(file),
        ..Overrides::default()
    };
    let config = load(&[("GH_SECRET", "x")], overrides).unwrap();
    assert!(!config.sources.accept_unknown);
    assert!(config.sources.get("github").is_some());
    assert!(config.sources.resolve("gitlab").is_none());
}

#[test]
fn postgres_urls_hide_passwords() {
    let url = DatabaseUrl::parse("postgres://user:secret@db:5432/hooks").unwrap();
    assert_eq!(url.to_string(), "postgres://db:5432/hooks");
}
