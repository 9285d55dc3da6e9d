//! The dashboard at `/ui`: server-rendered pages over the same store the admin API
//! uses, and form posts (CSRF-checked) for replays. No scripts, no build step.

mod chart;
mod pages;
mod session;

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use crate::domain::event::EventId;
use crate::error_code::ErrorCode;
use crate::http::state::AppState;
use crate::ops::Operators;
use crate::ops::OpsError;
use crate::ops::events::ReplayScope;
use pages::events::{FilterForm, given};
use session::{CsrfToken, check_csrf};
pub use session::{require_dashboard, sign_out};

const PAGE_SIZE: usize = 50;

/// A failure shown as a page, for a person; the status and code are the API's.
pub struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<OpsError> for UiError {
    fn from(error: OpsError) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log_if_internal();
        let status = error.status();
        let title = status.canonical_reason().unwrap_or("Error");
        (status, pages::layout::error(title, &error.public_message())).into_response()
    }
}

/// Headers every dashboard answer carries: no caching of admin data, no framing (the
/// replay buttons must not be clickjacked), no scripts, no referrer.
pub async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    status: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    /// Set by the redirect after a bulk replay.
    replayed: Option<u64>,
}

/// The dashboard: counts by status, a filterable list of events, newest first.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "operations",
    params(
        // The filter form sends its empty fields too: each may be empty.
        ("status" = Option<String>, Query, pattern = r"^(|queued|processing|retrying|delivered|dead_lettered|filtered)$", description = "Only events in this status"),
        ("source" = Option<String>, Query, pattern = r"^[A-Za-z0-9_.\-]{0,64}$"),
        ("destination" = Option<String>, Query, pattern = r"^[A-Za-z0-9_.\-]{0,64}$", description = "Only events with a delivery to this destination"),
        ("since" = Option<String>, Query, pattern = r"^(|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$", description = "Received at or after (RFC 3339)"),
        ("until" = Option<String>, Query, pattern = r"^(|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$", description = "Received before (RFC 3339)"),
        ("cursor" = Option<String>, Query, pattern = r"^[0-9]{0,18}$", description = "From the page's \"Older events\" link"),
        ("token" = Option<String>, Query, description = "The admin token, once: exchanged for a session cookie and a redirect without it"),
    ),
    responses(
        (status = 200, content_type = "text/html", body = String, description = "The dashboard"),
        (status = 303, description = "After `?token=`: a session cookie and the same page without the token"),
        (status = 400, content_type = "text/html", body = String, description = "A filter that does not parse, shown on the page"),
    ),
    security(("admin_token" = []))
)]
pub async fn overview(
    State(operators): State<Arc<Operators>>,
    headers: HeaderMap,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
    let filter = FilterForm::new(
        query.status,
        query.source,
        query.destination,
        query.since,
        query.until,
    );
    let counts = operators.counts().await?;
    let (gauges, delivered) = (counts.gauges, counts.delivered);

    let cursor = given(query.cursor)
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| "the page's position is not one this dashboard gave out".to_owned())
        })
        .transpose();
    let parsed = filter.parse().map_err(|e| e.to_string());
    let (page, error) = match parsed.and_then(|parsed| Ok((parsed, cursor?))) {
        Ok((parsed, cursor)) => (
            Some(operators.list(&parsed, PAGE_SIZE, cursor).await?),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let csrf = CsrfToken::for_request(&headers);
    let notice = query
        .replayed
        .map(|n| format!("Replayed {n} deliver{}.", if n == 1 { "y" } else { "ies" }));
    let markup = pages::events::overview(&pages::events::Overview {
        gauges: &gauges,
        delivered,
        filter: &filter,
        events: page.as_ref().map(|p| p.events.as_slice()).unwrap_or(&[]),
        next_cursor: page.as_ref().and_then(|p| p.next_cursor),
        notice,
        error: error.clone(),
        csrf: &csrf.value,
    });
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, markup).into_response();
    csrf.attach(&mut response);
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    /// Set by the redirect after a replay.
    replayed: Option<String>,
}

/// One event: its state, attempts, headers and payload.
pub async fn event(
    State(operators): State<Arc<Operators>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let id = EventId::from_stored(id);
    let detail = operators.show(&id).await?;
    let event = &detail.event;
    let attempts = operators.attempts(&id).await?;
    let replayed = query.is_ok_and(|Query(q)| q.replayed.is_some());
    let why_filtered = if event.deliveries.is_empty() {
        operators.why_filtered(event)
    } else {
        None
    };
    let csrf = CsrfToken::for_request(&headers);
    let trace_id = event
        .trace_context
        .as_deref()
        .and_then(crate::telemetry::propagation::trace_id_of);
    let trace = trace_id.map(|id| (id, operators.trace_url(id)));
    let markup = pages::events::event(&pages::events::EventPage {
        event,
        trace: trace.as_ref().map(|(id, url)| (*id, url.as_deref())),
        attempts: &attempts,
        notice: replayed.then_some("Queued again; attempts continue below as they happen."),
        csrf: &csrf.value,
        waits: &detail.deliveries,
        why_filtered: why_filtered.as_ref(),
    });
    let mut response = markup.into_response();
    csrf.attach(&mut response);
    Ok(response)
}

/// Every destination: state, backlog, in flight, oldest due, last outcomes.
pub async fn destinations(State(operators): State<Arc<Operators>>) -> Result<Response, UiError> {
    let all = operators.destinations().await?;
    let hours = operators.last_hour().await?;
    Ok(pages::destinations::destinations(&all, &hours).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct DestinationQuery {
    /// Set after a pause or resume, to say it was done.
    done: Option<String>,
}

/// One destination, with the latest events routed to it.
pub async fn destination(
    State(operators): State<Arc<Operators>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<DestinationQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let destination = operators.destination(&name).await?;
    let filter = crate::store::EventFilter {
        destination: Some(name),
        ..crate::store::EventFilter::default()
    };
    let recent = operators.list(&filter, 20, None).await?;
    let hours = operators.last_hour().await?;
    let done = query.ok().and_then(|Query(q)| q.done);
    let notice = match done.as_deref() {
        Some("pause") => Some("Paused: no worker sends here until it is resumed."),
        Some("resume") => Some("Resumed: waiting deliveries are being sent."),
        _ => None,
    };
    let csrf = CsrfToken::for_request(&headers);
    let markup = pages::destinations::destination(&pages::destinations::DestinationPage {
        destination: &destination,
        recent: &recent.events,
        hours: &hours,
        notice,
        csrf: &csrf.value,
    });
    let mut response = markup.into_response();
    csrf.attach(&mut response);
    Ok(response)
}

/// The destination page's "Pause" button.
pub async fn pause(
    state: State<Arc<Operators>>,
    name: Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    set_paused(state, name, headers, form, true).await
}

/// The destination page's "Resume" button.
pub async fn resume(
    state: State<Arc<Operators>>,
    name: Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    set_paused(state, name, headers, form, false).await
}

async fn set_paused(
    State(operators): State<Arc<Operators>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
    paused: bool,
) -> Result<Response, UiError> {
    let field = form.ok().and_then(|Form(f)| f.csrf);
    check_csrf(&headers, field.as_deref())?;
    operators.set_paused(&name, paused).await?;
    let verb = if paused { "pause" } else { "resume" };
    Ok(see_other(&format!("/ui/destinations/{name}?done={verb}")))
}

#[derive(Debug, Default, Deserialize)]
pub struct FindQuery {
    /// An event id, or an idempotency key together with `source`.
    q: Option<String>,
    source: Option<String>,
}

/// The "find" box: an event id, or a source's idempotency key (what the sender calls
/// its event, e.g. Stripe's `evt_…` id), straight to the event's page.
pub async fn find(
    State(state): State<AppState>,
    query: Result<Query<FindQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let Some(wanted) = given(query.q) else {
        return Ok(see_other("/ui"));
    };
    match state
        .operators
        .get(&EventId::from_stored(wanted.clone()))
        .await
    {
        Ok(event) => return Ok(see_other(&format!("/ui/events/{}", event.id))),
        Err(OpsError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    let Some(source) = given(query.source) else {
        return Err(ApiError::invalid(
            ErrorCode::InvalidQuery,
            format!(
                "no event has the id {wanted:?}; to find it by idempotency key, give its source \
                 too (keys are unique per source)"
            ),
        )
        .into());
    };
    let event = state.operators.find_by_key(&source, &wanted).await?;
    Ok(see_other(&format!("/ui/events/{}", event.id)))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ReplayTarget {
    destination: Option<String>,
}

/// The event page's replay buttons: one per finished delivery, or "route again".
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    target: Result<Query<ReplayTarget>, QueryRejection>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let field = form.ok().and_then(|Form(f)| f.csrf);
    check_csrf(&headers, field.as_deref())?;
    let target = target.map(|Query(t)| t).unwrap_or_default();
    let id = EventId::from_stored(id);
    state
        .operators
        .replay(&id, given(target.destination).as_deref())
        .await?;
    Ok(see_other(&format!("/ui/events/{id}?replayed=1")))
}

#[derive(Debug, Deserialize)]
pub struct BulkCsrfForm {
    csrf: Option<String>,
    status: Option<String>,
    source: Option<String>,
    destination: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// The list's "replay every matching event" button.
pub async fn replay_matching(
    State(operators): State<Arc<Operators>>,
    headers: HeaderMap,
    form: Result<Form<BulkCsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Ok(Form(form)) = form else {
        return Err(ApiError::CsrfRejected.into());
    };
    check_csrf(&headers, form.csrf.as_deref())?;
    let shown = FilterForm::new(
        form.status,
        form.source,
        form.destination,
        form.since,
        form.until,
    );
    let filter = shown.parse().map_err(OpsError::from)?;
    // The one replay policy: a form whose fields went missing never means "everything".
    let scope = ReplayScope::new(filter, false)?;
    let replayed = operators.replay_matching(&scope).await?;
    let query = serde_urlencoded::to_string(&shown).unwrap_or_default();
    Ok(see_other(&format!("/ui?{query}&replayed={replayed}")))
}

/// A redirect after a form post, so that reloading the page does not post again.
fn see_other(location: &str) -> Response {
    // Locations are built from stored ids and encoded filters; should one still not
    // be a valid header, the dashboard's front page is a safe place to land.
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/ui"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
