//! When the next attempt happens: `base × factor^(n−1) × (1 ± jitter)`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub factor: f64,
    /// Fraction in `[0, 1)`: each delay is scaled by a uniform factor in `1 ± jitter`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            factor: 3.0,
            jitter: 0.2,
        }
    }
}

/// Longest delay we ever schedule, so that a large factor cannot overflow.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

impl RetryPolicy {
    /// The delay before the attempt after failed attempt `attempt` (1-based), without jitter.
    pub fn nominal_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.base_delay.as_secs_f64() * self.factor.powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY)
    }

    /// The delay with jitter drawn from `unit`, a uniform sample in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let scale = 1.0 + self.jitter * (2.0 * unit - 1.0);
        self.nominal_delay(attempt).mul_f64(scale.max(0.0))
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_10_30_90_270_seconds() {
        let policy = RetryPolicy::default();
        let secs: Vec<u64> = (1..=4).map(|n| policy.nominal_delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 30, 90, 270]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_with(1, 0.0), Duration::from_secs(8));
        assert_eq!(policy.delay_with(1, 0.5), Duration::from_secs(10));
        for _ in 0..1000 {
            let d = policy.delay(2).as_secs_f64();
            assert!((24.0..=36.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn huge_factors_saturate() {
        let policy = RetryPolicy {
            factor: 1e9,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.nominal_delay(60), MAX_DELAY);
    }
}
