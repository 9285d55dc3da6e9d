//! The built-in processor for sources without a destination. It honours the test
//! flags `simulate_failure`, `simulate_transient` and `simulate_delay_ms` in a JSON
//! object payload; anything else succeeds at once.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::domain::lifecycle::AttemptOutcome;
use crate::store::ClaimedDelivery;

/// The longest simulated delay, whatever the payload asks for.
pub const MAX_SIMULATED_DELAY: Duration = Duration::from_secs(30);
/// `simulate_transient` succeeds on this attempt.
const TRANSIENT_SUCCEEDS_ON: u32 = 3;

/// `None` when shutdown interrupted the attempt before it finished.
pub async fn process(
    event: &ClaimedDelivery,
    shutdown: &CancellationToken,
) -> Option<AttemptOutcome> {
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&event.body) else {
        return Some(AttemptOutcome::Delivered);
    };
    let flag = |name: &str| payload.get(name).and_then(Value::as_bool) == Some(true);

    if flag("simulate_failure") {
        return Some(AttemptOutcome::Failed {
            error: "Simulated failure".into(),
            retry_after: None,
        });
    }
    if flag("simulate_transient") && event.attempt < TRANSIENT_SUCCEEDS_ON {
        return Some(AttemptOutcome::Failed {
            error: format!(
                "Simulated transient failure (attempt {} of {TRANSIENT_SUCCEEDS_ON} needed)",
                event.attempt
            ),
            retry_after: None,
        });
    }
    if let Some(ms) = payload.get("simulate_delay_ms").and_then(Value::as_u64) {
        let delay = Duration::from_millis(ms).min(MAX_SIMULATED_DELAY);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return None,
        }
    }
    Some(AttemptOutcome::Delivered)
}
