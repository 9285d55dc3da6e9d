//! The dashboard over HTTP: sign-in by token and cookie, what the pages show, and the
//! CSRF check on its replay buttons. `browser.rs` drives the same pages in Chromium.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::support::helpers::*;

const TOKEN: &str = "d4shb0ard-t0ken";

/// A client that shows redirects instead of following them, and keeps no cookies.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A page's HTML, whatever its status.
async fn page_html(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn set_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// `name=value` from a Set-Cookie header, for sending back.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The number on a status's count card.
fn count_card(html: &str, status: &str) -> u64 {
    let marker = format!("data-status=\"{status}\"><b>");
    let start = html.find(&marker).expect("count card") + marker.len();
    let digits: String = html[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// The CSRF field a page's forms carry.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

fn event_links(html: &str) -> usize {
    html.matches("href=\"/ui/events/").count()
}

async fn signing_in_with_the_token_sets_a_session_cookie(backend: Backend) {
    let app = TestApp::on(backend)
        .settings(&[("HOOKRELAY_ADMIN_TOKEN", TOKEN)])
        .spawn()
        .await;
    let client = plain_client();

    for path in ["/ui", "/ui?token=wrong", "/ui/events/evt_x"] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(set_cookie(response.headers(), "hookrelay_session").is_none());
        let body = response.json().await.unwrap();
        assert_error(&body, "unauthorized");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("/ui?token="),
            "says how to sign in: {message}"
        );
    }

    // A browser is told the same as a page, with a link back to where it was going
    // (the token, if any, taken out).
    for (path, back) in [
        ("/ui/events/evt_x?from=alert", "/ui/events/evt_x?from=alert"),
        ("/ui?token=wrong&status=queued", "/ui?status=queued"),
    ] {
        let response = client
            .get(app.url(path))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("/ui?token=&lt;HOOKRELAY_ADMIN_TOKEN&gt;"),
            "{page}"
        );
        assert!(
            page.contains(&format!("href=\"{}\"", back.replace('&', "&amp;"))),
            "{page}"
        );
    }

    let signed_in = client
        .get(app.url(&format!("/ui?status=dead_lettered&token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers()[LOCATION],
        "/ui?status=dead_lettered",
        "the token leaves the address"
    );
    let session = set_cookie(signed_in.headers(), "hookrelay_session")
        .expect("a session cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }

    let page = client
        .get(app.url("/ui?status=dead_lettered"))
        .header("cookie", cookie_pair(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("<table id=\"events\""));

    // The bearer token opens the dashboard too; a forged session does not.
    let with_bearer = client
        .get(app.url("/ui"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_bearer.status(), 200);
    let forged = client
        .get(app.url("/ui"))
        .header("cookie", "hookrelay_session=99999999999.00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // The session is the dashboard's: the JSON API still wants the bearer token.
    let api = client
        .get(app.url("/events"))
        .header("cookie", cookie_pair(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    // Signing out clears the cookie: the browser is asked to forget it at once.
    let signed_out = client
        .get(app.url("/ui/sign-out"))
        .header("cookie", cookie_pair(&session))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 200);
    let cleared = set_cookie(signed_out.headers(), "hookrelay_session").expect("a cleared cookie");
    assert!(cleared.starts_with("hookrelay_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(signed_out.text().await.unwrap().contains("Signed out"));
}

async fn the_pages_show_counts_events_and_their_history(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let client = plain_client();
    let mut shop = Vec::new();
    for n in 0..2 {
        shop.push(
            app.accept("shop", &format!("order-{n}"), json!({"order": n}))
                .await,
        );
    }
    let failing = app
        .accept(
            "billing",
            "invoice-1",
            json!({"simulate_failure": true, "note": "<script>alert(1)</script>"}),
        )
        .await;
    for id in &shop {
        app.wait_for_status(id, "delivered", Duration::from_secs(10))
            .await;
    }
    app.wait_for_status(&failing, "dead_lettered", Duration::from_secs(10))
        .await;

    let overview = client.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(overview.status(), 200);
    let headers = overview.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = overview.text().await.unwrap();
    assert_eq!(count_card(&html, "delivered"), 2);
    assert_eq!(count_card(&html, "dead_lettered"), 1);
    assert_eq!(count_card(&html, "queued"), 0);
    assert_eq!(count_card(&html, "processing"), 0);
    assert_eq!(count_card(&html, "retrying"), 0);
    assert_eq!(event_links(&html), 3);

    let billing = page_html(&client, app.url("/ui?source=billing&status=")).await;
    assert_eq!(event_links(&billing), 1);
    assert!(billing.contains(&failing));
    assert!(billing.contains("Simulated failure"));
    assert!(!billing.contains(&shop[0]));

    let page = client
        .get(app.url(&format!("/ui/events/{failing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("dead_lettered"));
    assert!(html.contains("5 of 5"));
    let attempts =
        &html[html.find("id=\"attempts\"").unwrap()..html.find("id=\"headers\"").unwrap()];
    assert_eq!(attempts.matches("Simulated failure").count(), 5);
    assert!(html.contains("idempotency-key") && html.contains("invoice-1"));
    // The payload is shown, and a sender's markup stays text.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("action=\"/ui/events/"), "a replay button");

    // The find box: an event id, or a source's idempotency key.
    let event_page = format!("/ui/events/{failing}");
    for (query, expected) in [
        (format!("q={failing}"), Some(event_page.as_str())),
        (
            "q=invoice-1&source=billing".to_owned(),
            Some(event_page.as_str()),
        ),
        (
            "q=+invoice-1+&source=billing".to_owned(),
            Some(event_page.as_str()),
        ),
        ("q=invoice-1&source=shop".to_owned(), None),
    ] {
        let found = client
            .get(app.url(&format!("/ui/find?{query}")))
            .send()
            .await
            .unwrap();
        match expected {
            Some(location) => {
                assert_eq!(found.status(), 303, "{query}");
                assert_eq!(found.headers()[LOCATION], location, "{query}");
            }
            None => assert_eq!(found.status(), 404, "{query}"),
        }
    }
    let without_source = client
        .get(app.url("/ui/find?q=invoice-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(without_source.status(), 400);
    assert!(
        without_source
            .text()
            .await
            .unwrap()
            .contains("give its source")
    );

    let bad_filter = client
        .get(app.url("/ui?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_filter.status(), 400);
    assert!(bad_filter.text().await.unwrap().contains("RFC 3339"));
    let missing = client
        .get(app.url("/ui/events/evt_missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("event not found"));
}

async fn the_list_pages_older_events(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let client = plain_client();
    for n in 0..55 {
        app.accept("bulk", &format!("k{n}"), json!({"n": n})).await;
    }
    let first = page_html(&client, app.url("/ui?source=bulk")).await;
    assert_eq!(event_links(&first), 50);
    let marker = "<a href=\"/ui?";
    let start = first.rfind(marker).expect("an older-events link") + "<a href=\"".len();
    let link = &first[start..start + first[start..].find('"').unwrap()];
    assert!(
        link.contains("source=bulk") && link.contains("cursor="),
        "{link}"
    );
    let second = page_html(&client, app.url(&link.replace("&amp;", "&"))).await;
    assert_eq!(event_links(&second), 5);
    assert!(!second.contains("Older events"));
}

async fn replay_buttons_need_the_pages_csrf_token(backend: Backend) {
    let app = TestApp::on(backend).spawn().await;
    let client = plain_client();
    let first = app
        .accept("billing", "a", json!({"simulate_failure": true}))
        .await;
    let second = app
        .accept("billing", "b", json!({"simulate_failure": true}))
        .await;
    for id in [&first, &second] {
        app.wait_for_status(id, "dead_lettered", Duration::from_secs(10))
            .await;
    }

    let page = client
        .get(app.url(&format!("/ui/events/{first}")))
        .send()
        .await
        .unwrap();
    let cookie = cookie_pair(set_cookie(page.headers(), "hookrelay_csrf").expect("a CSRF cookie"));
    let field = csrf_field(&page.text().await.unwrap());
    assert_eq!(cookie, format!("hookrelay_csrf={field}"));

    let replay_url = app.url(&format!("/ui/events/{first}/replay"));
    let forgeries: [(Option<&str>, String, Option<&str>); 4] = [
        (None, String::new(), None),
        (
            Some(cookie.as_str()),
            "csrf=".to_owned() + &"0".repeat(64),
            None,
        ),
        (None, format!("csrf={field}"), None),
        (
            Some(cookie.as_str()),
            format!("csrf={field}"),
            Some("cross-site"),
        ),
    ];
    for (cookie, body, site) in &forgeries {
        let mut request = client
            .post(&replay_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(cookie) = cookie {
            request = request.header("cookie", *cookie);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", *site);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{cookie:?} {body} {site:?}");
        assert!(response.text().await.unwrap().contains("reload the page"));
    }
    let untouched = app.event(&first).await;
    assert_eq!(untouched["status"], "dead_lettered");
    assert_eq!(untouched["max_attempts"], 5);

    let replayed = client
        .post(&replay_url)
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", &field)])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303);
    assert_eq!(
        replayed.headers()[LOCATION],
        format!("/ui/events/{first}?replayed=1").as_str()
    );
    eventually(Duration::from_secs(10), "the replay to run", || async {
        let event = app.event(&first).await;
        (event["status"] == "dead_lettered" && event["attempts"] == 10).then_some(())
    })
    .await;

    // Replay by filter needs a filter (the one replay policy), then takes every match.
    let bulk_url = app.url("/ui/replay");
    let without_filter = client
        .post(&bulk_url)
        .header("cookie", &cookie)
        .form(&[("csrf", field.as_str()), ("status", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(without_filter.status(), 400);
    assert!(
        without_filter
            .text()
            .await
            .unwrap()
            .contains("needs at least one of")
    );
    let forged = client
        .post(&bulk_url)
        .form(&[("csrf", field.as_str()), ("status", "dead_lettered")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let bulk = client
        .post(&bulk_url)
        .header("cookie", &cookie)
        .form(&[
            ("csrf", field.as_str()),
            ("status", "dead_lettered"),
            ("source", "billing"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 303);
    assert_eq!(
        bulk.headers()[LOCATION],
        "/ui?status=dead_lettered&source=billing&replayed=2"
    );
    assert_eq!(app.event(&second).await["max_attempts"], 10);
}

/// An event's page lists its deliveries, each with its own replay button; the
/// destinations page shows each destination's backlog and last outcomes.
async fn deliveries_and_destinations_have_their_pages(backend: Backend) {
    let healthy = crate::support::receiver::Receiver::start(vec![]).await;
    let gone =
        crate::support::receiver::Receiver::start(vec![crate::support::receiver::Answer::status(
            410,
        )])
        .await;
    let config = format!(
        "[destinations.healthy]\nurl = \"{}\"\n[destinations.gone]\nurl = \"{}\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"healthy\"\n\
         [[sources.shop.routes]]\ndestination = \"gone\"\n",
        healthy.url(),
        gone.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let client = plain_client();
    let id = app.accept("shop", "order-1", json!({"id": 1})).await;
    app.wait_for_status(&id, "dead_lettered", Duration::from_secs(10))
        .await;

    let page = client
        .get(app.url(&format!("/ui/events/{id}")))
        .send()
        .await
        .unwrap();
    let cookie = cookie_pair(set_cookie(page.headers(), "hookrelay_csrf").unwrap());
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"deliveries\""), "{html}");
    for name in ["healthy", "gone"] {
        assert!(
            html.contains(&format!("data-destination=\"{name}\"")),
            "{html}"
        );
        assert!(
            html.contains(&format!("/replay?destination={name}\"")),
            "a replay button for {name}"
        );
    }
    let replay = client
        .post(app.url(&format!("/ui/events/{id}/replay?destination=gone")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &cookie)
        .body(format!("csrf={}", csrf_field(&html)))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(
        healthy.received().len(),
        1,
        "only the one delivery was replayed"
    );
    assert_eq!(gone.received().len(), 2);

    let html = page_html(&client, app.url("/ui/destinations")).await;
    assert!(html.contains("id=\"destinations\""), "{html}");
    assert!(html.contains("href=\"/ui/destinations/healthy\""), "{html}");
    let html = page_html(&client, app.url("/ui/destinations/gone")).await;
    assert!(html.contains(&gone.url()), "{html}");
    assert!(
        html.contains(&format!("/ui/events/{id}")),
        "the destination's recent events"
    );
    let missing = client
        .get(app.url("/ui/destinations/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

async fn a_destination_is_paused_and_resumed_with_its_buttons(backend: Backend) {
    let receiver = crate::support::receiver::Receiver::start(vec![]).await;
    let config = format!(
        "[destinations.app]\nurl = \"{}\"\n\
         [sources.shop]\n[[sources.shop.routes]]\ndestination = \"app\"\n",
        receiver.url()
    );
    let app = TestApp::on(backend).config(&config).spawn().await;
    let client = plain_client();
    let page = client
        .get(app.url("/ui/destinations/app"))
        .send()
        .await
        .unwrap();
    let cookie = cookie_pair(set_cookie(page.headers(), "hookrelay_csrf").unwrap());
    let html = page.text().await.unwrap();
    assert!(
        html.contains("action=\"/ui/destinations/app/pause\""),
        "{html}"
    );
    let field = csrf_field(&html);
    let press = |verb: &'static str, body: String, cookie: Option<String>| {
        let mut request = client
            .post(app.url(&format!("/ui/destinations/app/{verb}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    // Without the page's token: refused, nothing paused.
    let forged = press("pause", format!("csrf={field}"), None).await.unwrap();
    assert_eq!(forged.status(), 403);
    let state = get_json(&app.client, app.address, "/destinations").await;
    assert_eq!(state["destinations"][0]["state"], "active", "{state}");

    let paused = press("pause", format!("csrf={field}"), Some(cookie.clone()))
        .await
        .unwrap();
    assert_eq!(paused.status(), 303);
    let html = page_html(&client, app.url("/ui/destinations/app")).await;
    assert!(
        html.contains("action=\"/ui/destinations/app/resume\""),
        "{html}"
    );
    assert!(html.contains("paused"), "{html}");
    let id = app.accept("shop", "order-1", json!({"id": 1})).await;
    let html = page_html(&client, app.url(&format!("/ui/events/{id}"))).await;
    assert!(html.contains("waiting: destination paused"), "{html}");
    assert!(receiver.received().is_empty());

    let resumed = press("resume", format!("csrf={field}"), Some(cookie))
        .await
        .unwrap();
    assert_eq!(resumed.status(), 303);
    app.wait_for_status(&id, "delivered", Duration::from_secs(10))
        .await;
}

crate::on_both_backends!(
    a_destination_is_paused_and_resumed_with_its_buttons,
    deliveries_and_destinations_have_their_pages,
    signing_in_with_the_token_sets_a_session_cookie,
    the_pages_show_counts_events_and_their_history,
    the_list_pages_older_events,
    replay_buttons_need_the_pages_csrf_token,
);
