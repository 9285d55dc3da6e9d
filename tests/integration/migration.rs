//! Upgrading a database written by an earlier release (schema version 4, through 5 to
//! the deliveries of version 6): every event keeps its state, attempts and history as
//! its one delivery, to the destination it arrived for, and the `CHECK` holds after.

use hookrelay::domain::event::EventId;
use hookrelay::domain::lifecycle::EventStatus;
use hookrelay::store::{self, DatabaseUrl, OpenOptions};

use crate::support::helpers::*;

fn old_migrations(backend: Backend) -> Vec<String> {
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    [
        "0001_events.sql",
        "0002_dead_letter_index.sql",
        "0003_replay_round.sql",
        "0004_forward.sql",
    ]
    .iter()
    .map(|file| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir)
                .join(file),
        )
        .unwrap()
    })
    .collect()
}

async fn a_version_4_database_is_upgraded_with_nothing_lost(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create(backend, dir.path()).await;
    // The schema exactly as the previous release left it.
    for sql in old_migrations(backend) {
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            database.execute(statement).await.unwrap();
        }
    }
    match backend {
        Backend::Sqlite => {
            database.execute("PRAGMA user_version = 4").await.unwrap();
        }
        Backend::Postgres => {
            database
                .execute(
                    "CREATE TABLE hookrelay_migrations (version INTEGER PRIMARY KEY,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await
                .unwrap();
            database
                .execute("INSERT INTO hookrelay_migrations (version) VALUES (1), (2), (3), (4)")
                .await
                .unwrap();
        }
    }
    let statuses = [
        ("queued", 0),
        ("processing", 1),
        ("retrying", 2),
        ("delivered", 1),
        ("dead_lettered", 5),
    ];
    for (i, (status, attempts)) in statuses.iter().enumerate() {
        database
            .execute(&format!(
                "INSERT INTO events (id, source, idempotency_key, status, attempts, max_attempts,
                                     next_attempt_at, created_at, updated_at, headers, body,
                                     attempts_at_replay, forward)
                 VALUES ('evt_old_{i}', 'shop', 'k{i}', '{status}', {attempts}, 5,
                         1, {i}, {i}, '[]', {body}, 0, {forward})",
                forward = match (backend, i % 2) {
                    (Backend::Sqlite, 0) => "1",
                    (Backend::Sqlite, _) => "0",
                    (Backend::Postgres, 0) => "true",
                    (Backend::Postgres, _) => "false",
                },
                body = match backend {
                    Backend::Sqlite => "X'7B7D'",
                    Backend::Postgres => "'\\x7b7d'::bytea",
                },
            ))
            .await
            .unwrap();
    }
    database
        .execute(
            "INSERT INTO attempts (event_id, attempt, started_at, duration_us, status_code, error)
             VALUES ('evt_old_4', 5, 10, 1000, 500, 'HTTP 500')",
        )
        .await
        .unwrap();

    let store = store::open(
        &DatabaseUrl::parse(&database.url).unwrap(),
        OpenOptions {
            migrate: true,
            runs_api: true,
            runs_worker: false,
            pool_size: 2,
        },
    )
    .await
    .expect("the old database opens and is upgraded");
    for (i, (status, attempts)) in statuses.iter().enumerate() {
        let event = store
            .get_event(&EventId::from_stored(format!("evt_old_{i}")))
            .await
            .unwrap()
            .expect("event kept");
        assert_eq!(event.deliveries.len(), 1, "one delivery per old event");
        let delivery = &event.deliveries[0];
        assert_eq!(
            delivery.state.status,
            status.parse::<EventStatus>().unwrap()
        );
        assert_eq!(delivery.state.attempts, *attempts);
        assert_eq!(delivery.state.max_attempts, 5);
        // It arrived for the source's destination (now named after the source), or
        // for the built-in processor.
        let expected = if i % 2 == 0 { "shop" } else { "built-in" };
        assert_eq!(delivery.destination, expected);
        assert_eq!(event.status(), delivery.state.status);
        assert_eq!(event.idempotency_key, format!("k{i}"));
        assert_eq!(event.body, b"{}");
    }
    let history = store
        .list_attempts(&EventId::from_stored("evt_old_4".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status_code, Some(500));
    assert_eq!(history[0].destination, "shop");
    // The upgraded schema refuses what the lifecycle does not know.
    assert!(
        database
            .execute("UPDATE deliveries SET status = 'done' WHERE event_id = 'evt_old_0'")
            .await
            .is_err()
    );
    // And it works: the queued event is claimed, the dead one replayed.
    let claim = store
        .claim(hookrelay::store::ClaimRequest {
            lease: std::time::Duration::from_secs(30),
            wants: vec![hookrelay::store::Want {
                destination: "shop".into(),
                limit: 10,
                limits: Default::default(),
            }],
        })
        .await
        .unwrap();
    assert!(
        claim
            .deliveries
            .iter()
            .any(|d| d.event_id.as_str() == "evt_old_0" && d.destination == "shop")
    );
    store.close().await;
}

crate::on_both_backends!(a_version_4_database_is_upgraded_with_nothing_lost);
