//! The dashboard in a real browser: Debian's headless Chromium, driven through
//! chromedriver. It signs in with `?token=`, reads the pages as a person would, and
//! presses the replay buttons.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/test` installs them). With
//! `HOOKRELAY_SCREENSHOTS=<dir>` it also saves the screenshots the README shows.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::helpers::*;

const TOKEN: &str = "br0wser-t0ken";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver and the Chromium it starts, in a process group of their own so that
/// nothing outlives the test, even when it fails.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: TempDir,
}

impl Browser {
    async fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver \
                 (scripts/test does)"
            );
        }
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts")
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        eventually(
            Duration::from_secs(20),
            "chromedriver to listen",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(drop)
            },
        )
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("a Chromium session");
        Self {
            driver,
            client: Some(client),
            _profile: profile,
        }
    }

    fn page(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    async fn text(&self, css: &str) -> String {
        self.page()
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .text()
            .await
            .expect("element text")
    }

    async fn rows(&self, table: &str) -> usize {
        self.page()
            .find_all(Locator::Css(&format!("#{table} tbody tr")))
            .await
            .expect("rows")
            .len()
    }

    async fn click(&self, css: &str) {
        self.page()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn path_and_query(&self) -> String {
        let url = self.page().current_url().await.expect("url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("HOOKRELAY_SCREENSHOTS") {
            let png = self.page().screenshot().await.expect("screenshot");
            std::fs::write(PathBuf::from(dir).join(name), png).expect("screenshot written");
        }
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group (see `start`), so this reaches the
        // browser processes too and nothing else.
        if let Ok(group) = libc::pid_t::try_from(self.driver.id()) {
            // SAFETY: killpg only sends a signal; the group is the driver's own.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}

/// The event through the JSON API, with the bearer token.
async fn event(app: &TestApp, id: &str) -> Value {
    app.client
        .get(app.url(&format!("/events/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn settled(app: &TestApp, id: &str, status: &str, attempts: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = event(app, id).await;
        if event["status"] == status && event["attempts"] == attempts {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} did not reach {status} after {attempts} attempts: {event}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_operator_finds_a_dead_letter_and_replays_it_in_the_browser() {
    let app = TestApp::on(Backend::Sqlite)
        .settings(&[("HOOKRELAY_ADMIN_TOKEN", TOKEN)])
        .spawn()
        .await;
    let mut delivered = Vec::new();
    for (source, key, body) in [
        ("shop", "order-1", json!({"order": 1, "total": "19.99"})),
        (
            "github",
            "delivery-1",
            json!({"action": "opened", "number": 42}),
        ),
        (
            "github",
            "delivery-2",
            json!({"action": "closed", "number": 42}),
        ),
        (
            "stripe",
            "evt_1",
            json!({"id": "evt_1", "type": "charge.succeeded"}),
        ),
    ] {
        delivered.push(app.accept(source, key, body).await);
    }
    let failing = app
        .accept(
            "billing",
            "invoice-7",
            json!({"type": "invoice.paid", "simulate_failure": true}),
        )
        .await;
    for id in &delivered {
        settled(&app, id, "delivered", 1).await;
    }
    settled(&app, &failing, "dead_lettered", 5).await;

    let browser = Browser::start().await;

    // Not signed in: a page that says how.
    browser.page().goto(&app.url("/ui")).await.unwrap();
    assert!(browser.text(".notice").await.contains("/ui?token="));

    // Signing in: the token is swapped for a cookie scripts cannot read, and leaves
    // the address bar.
    browser
        .page()
        .goto(&app.url(&format!("/ui?token={TOKEN}")))
        .await
        .unwrap();
    assert_eq!(browser.path_and_query().await, "/ui");
    assert_eq!(browser.page().title().await.unwrap(), "Events · hookrelay");
    assert_eq!(browser.text("a[data-status=dead_lettered] b").await, "1");
    assert_eq!(browser.text("a[data-status=delivered] b").await, "4");
    assert_eq!(browser.text("a[data-status=queued] b").await, "0");
    assert_eq!(browser.rows("events").await, 5);
    let cookies = browser
        .page()
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(cookies, json!(""), "session and CSRF cookies are HttpOnly");
    browser.screenshot("dashboard.png").await;

    // Narrowing the list with the filter form.
    browser
        .page()
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("dead_lettered")
        .await
        .unwrap();
    browser.click("form.filter button[type=submit]").await;
    browser.text("a.count.selected").await;
    assert_eq!(
        browser.path_and_query().await,
        "/ui?status=dead_lettered&source=&destination=&since=&until="
    );
    assert_eq!(browser.rows("events").await, 1);
    assert!(browser.text("#events").await.contains("Simulated failure"));

    // The event page: state, every attempt, headers and payload.
    browser
        .click(&format!("a[href='/ui/events/{failing}']"))
        .await;
    assert_eq!(browser.text("h1").await, failing);
    let summary = browser.text("dl").await;
    assert!(
        summary.contains("Permanently failed after max attempts"),
        "{summary}"
    );
    let deliveries = browser.text("#deliveries").await;
    assert!(
        deliveries.contains("built-in") && deliveries.contains("5 of 5"),
        "{deliveries}"
    );
    assert_eq!(browser.rows("attempts").await, 5);
    assert!(browser.text("#headers").await.contains("invoice-7"));
    assert!(
        browser
            .text("#payload")
            .await
            .contains("\"type\": \"invoice.paid\"")
    );
    browser.screenshot("event.png").await;

    // Replay: queued again with a fresh set of attempts, the history kept.
    browser.click("#deliveries form button").await;
    assert!(browser.text(".notice").await.contains("Queued again"));
    settled(&app, &failing, "dead_lettered", 10).await;
    browser.page().refresh().await.unwrap();
    browser.text("#attempts").await;
    assert_eq!(browser.rows("attempts").await, 10);
    assert!(browser.text("#deliveries").await.contains("10 of 10"));

    // Replay by filter from the list.
    browser
        .page()
        .goto(&app.url("/ui?status=dead_lettered"))
        .await
        .unwrap();
    browser.click("form.actions button").await;
    assert_eq!(browser.text(".notice").await, "Replayed 1 delivery.");
    settled(&app, &failing, "dead_lettered", 15).await;

    // Finding an event by what the sender calls it.
    browser.page().goto(&app.url("/ui")).await.unwrap();
    for (field, value) in [("q", "invoice-7"), ("source", "billing")] {
        browser
            .page()
            .find(Locator::Css(&format!(
                "form[action='/ui/find'] input[name={field}]"
            )))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    browser.click("form[action='/ui/find'] button").await;
    assert_eq!(browser.text("h1").await, failing);
    assert!(browser.text("dl").await.contains("invoice-7"));

    // The destinations page: each destination's backlog and last outcomes.
    browser.click("header nav a[href='/ui/destinations']").await;
    assert_eq!(browser.text("h1").await, "Destinations");
    assert!(browser.text("#destinations").await.contains("built-in"));

    browser.close().await;
}

/// The text of the first element matching `css` that the page does not render
/// (an SVG `title`).
async fn text_content(browser: &Browser, css: &str) -> String {
    let value = browser
        .page()
        .execute(
            "return document.querySelector(arguments[0]).textContent",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_operator_sees_when_a_destination_started_failing_and_that_it_drains() {
    use crate::support::receiver::{Answer, Receiver};
    // `billing` answers 503 four times (its breaker opens after three), then 200.
    let billing = Receiver::start(vec![Answer::status(503); 4]).await;
    let crm = Receiver::start(Vec::new()).await;
    let slack = Receiver::start(Vec::new()).await;
    let config = format!(
        r#"
[destinations.billing]
url = "{}"
breaker_failures = 3
breaker_probe = "300ms"
[destinations.crm]
url = "{}"
[sources.shop]
[[sources.shop.routes]]
destination = "billing"
[[sources.shop.routes]]
destination = "crm"
[alerts]
url = "{}"
settle = "1s"
"#,
        billing.url(),
        crm.url(),
        slack.url()
    );
    let app = TestApp::on(Backend::Sqlite)
        .config(&config)
        .settings(&[
            ("HOOKRELAY_ADMIN_TOKEN", TOKEN),
            ("HOOKRELAY_WORKER_CONCURRENCY", "1"),
        ])
        .spawn()
        .await;
    // The hour before: steady deliveries, an outage from 25 to 15 minutes ago with its
    // backlog, drained since. Seeded as the workers would have written it.
    let minute = 60_000_000_i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let current = now / minute * minute;
    for ago in 1..=50_i64 {
        let outage = (15..25).contains(&ago);
        let (delivered, failed, backlog) = if outage {
            (0, 6 + ago % 3, 40 * (25 - ago))
        } else if (10..15).contains(&ago) {
            (120, 0, 80 * (ago - 10))
        } else {
            (40 + (ago * 7) % 13, i64::from(ago == 30), 2)
        };
        for (name, delivered, failed, backlog) in [
            ("billing", delivered, failed, backlog),
            ("crm", 40 + (ago * 5) % 11, 0, 1),
        ] {
            app.database
                .execute(&format!(
                    "INSERT INTO destination_minutes (destination, minute, delivered, failed, backlog)
                     VALUES ('{name}', {}, {delivered}, {failed}, {backlog})",
                    current - ago * minute
                ))
                .await
                .unwrap();
        }
    }
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.accept("shop", &format!("order-{i}"), json!({"order": i}))
                .await,
        );
    }
    for id in &ids {
        eventually(Duration::from_secs(20), "delivered to both", || async {
            (event(&app, id).await["status"] == "delivered").then_some(())
        })
        .await;
    }
    eventually(
        Duration::from_secs(10),
        "the recovery alert sent",
        || async {
            slack
                .received()
                .iter()
                .any(|r| String::from_utf8_lossy(&r.body).contains("*billing* recovered"))
                .then_some(())
        },
    )
    .await;

    let browser = Browser::start().await;
    browser
        .page()
        .goto(&app.url(&format!("/ui/destinations?token={TOKEN}")))
        .await
        .unwrap();
    assert_eq!(browser.text("h1").await, "Destinations");
    let summary = text_content(&browser, "tr[data-destination=billing] svg.chart title").await;
    assert!(summary.starts_with("billing, last hour: "), "{summary}");
    assert!(summary.contains("first failure at"), "{summary}");
    assert!(summary.contains("backlog now"), "{summary}");
    let alert = browser
        .text("tr[data-destination=billing] td.last-alert")
        .await;
    assert!(alert.starts_with("recovered at"), "{alert}");
    assert!(alert.contains("(sent)"), "{alert}");
    assert_eq!(
        browser.text("tr[data-destination=crm] td.last-alert").await,
        "—"
    );
    browser.screenshot("destinations.png").await;

    browser.click("a[href='/ui/destinations/billing']").await;
    assert_eq!(browser.text("h1").await, "billing");
    let failed = browser
        .page()
        .find_all(Locator::Css("svg.chart.full rect.failed"))
        .await
        .unwrap();
    assert!(failed.len() >= 10, "{} failed minutes drawn", failed.len());
    let legend = browser.text("svg.chart.full + p.legend").await;
    assert!(legend.contains("failed (first failure at"), "{legend}");
    assert!(browser.text("#last-alert").await.contains("recovered"));
    browser.screenshot("destination.png").await;

    browser.close().await;
}
