//! Each destination's lane through a worker: its own attempt slots, so that a slow or
//! dead destination holds only its own and never delays the others (isolation), and
//! whether a claim for it is worth making now.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::domain::protection::Wait;

#[derive(Debug, Default)]
struct Lane {
    running: usize,
    /// A claim for it may find work.
    ready: bool,
    /// Its last claim filled every slot asked for: it waits for a few to free up
    /// before claiming again, so a busy lane claims in batches.
    saturated: bool,
    /// It waits for one of its attempts to finish (in-flight limit, busy keys, a probe).
    wake_on_finish: bool,
}

pub struct Lanes {
    lanes: Mutex<BTreeMap<String, Lane>>,
    capacity: usize,
    /// Slots that free up after a saturated claim before the next one.
    refill: usize,
    finished: Notify,
}

impl Lanes {
    /// One lane per destination, each with `capacity` slots, all ready.
    pub fn new(destinations: impl IntoIterator<Item = String>, capacity: usize) -> Self {
        let lanes = destinations
            .into_iter()
            .map(|name| {
                let lane = Lane {
                    ready: true,
                    ..Lane::default()
                };
                (name, lane)
            })
            .collect();
        Self {
            lanes: Mutex::new(lanes),
            capacity,
            refill: (capacity / 8).max(1),
            finished: Notify::new(),
        }
    }

    /// The destinations worth claiming for now, with how many each has room for.
    pub fn wanted(&self) -> Vec<(String, usize)> {
        let Ok(lanes) = self.lanes.lock() else {
            return Vec::new();
        };
        lanes
            .iter()
            .filter_map(|(name, lane)| self.room(lane).map(|free| (name.clone(), free)))
            .collect()
    }

    /// After a claim: `started` of `wanted` began; `wait` says why the rest did not.
    pub fn claimed(
        &self,
        name: &str,
        wanted: usize,
        started: usize,
        wait: Option<Wait>,
        probe: bool,
    ) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        let Some(lane) = lanes.get_mut(name) else {
            return;
        };
        lane.running += started;
        lane.saturated = started == wanted && wait.is_none();
        // A full claim may leave more due; anything else waits for a reason to look.
        lane.ready = lane.saturated;
        lane.wake_on_finish = matches!(wait, Some(Wait::InFlight)) || probe;
    }

    /// One of its attempts finished. The claimer is woken only when this makes the lane
    /// worth a claim: a busy lane frees several slots before it claims again, and
    /// waking the claimer for each finish in between would find nothing to do.
    pub fn finish(&self, name: &str) {
        let wanted = match self.lanes.lock() {
            Ok(mut lanes) => lanes.get_mut(name).is_some_and(|lane| {
                lane.running = lane.running.saturating_sub(1);
                if lane.wake_on_finish {
                    lane.wake_on_finish = false;
                    lane.ready = true;
                }
                self.room(lane).is_some()
            }),
            // A poisoned lock: let the claimer look for itself.
            Err(_) => true,
        };
        if wanted {
            self.finished.notify_one();
        }
    }

    /// The lane's free slots when it is worth a claim: ready, with enough free (one, or
    /// a few after a claim that filled them all).
    fn room(&self, lane: &Lane) -> Option<usize> {
        let free = self.capacity.saturating_sub(lane.running);
        let enough = if lane.saturated { self.refill } else { 1 };
        (lane.ready && free >= enough).then_some(free)
    }

    /// New work may be due anywhere (new events, a retry's time, a resume).
    pub fn all_ready(&self) {
        if let Ok(mut lanes) = self.lanes.lock() {
            for lane in lanes.values_mut() {
                lane.ready = true;
            }
        }
    }

    /// Resolves when an attempt finishes.
    pub async fn finished(&self) {
        self.finished.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes() -> Lanes {
        Lanes::new(["a".to_owned(), "b".to_owned()], 16)
    }

    #[test]
    fn a_lane_that_filled_its_slots_claims_again_once_a_few_free_up() {
        let lanes = lanes();
        assert_eq!(lanes.wanted(), [("a".into(), 16), ("b".into(), 16)]);
        lanes.claimed("a", 16, 16, None, false);
        lanes.claimed("b", 16, 0, None, false);
        // b found nothing: it waits for new work; a waits for two slots (16 / 8).
        assert!(lanes.wanted().is_empty());
        lanes.finish("a");
        assert!(lanes.wanted().is_empty());
        lanes.finish("a");
        assert_eq!(lanes.wanted(), [("a".into(), 2)]);
        lanes.all_ready();
        assert_eq!(lanes.wanted(), [("a".into(), 2), ("b".into(), 16)]);
    }

    /// Whether the claimer would be woken now.
    async fn woken(lanes: &Lanes) -> bool {
        tokio::time::timeout(std::time::Duration::ZERO, lanes.finished())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_claimer_is_woken_only_by_a_finish_that_makes_a_lane_worth_claiming() {
        let lanes = lanes();
        lanes.claimed("a", 16, 16, None, false);
        lanes.claimed("b", 16, 3, Some(Wait::InFlight), false);
        // a needs two free slots (16 / 8): its first finish wakes nobody.
        lanes.finish("a");
        assert!(!woken(&lanes).await);
        lanes.finish("a");
        assert!(woken(&lanes).await);
        // b waits for one of its attempts to finish: the first one wakes the claimer.
        lanes.finish("b");
        assert!(woken(&lanes).await);
        // An idle lane (its claim found less than it asked for) waits for new work.
        lanes.claimed("b", 16, 0, None, false);
        lanes.finish("b");
        assert!(!woken(&lanes).await);
    }

    #[test]
    fn a_slow_destination_holds_only_its_own_slots() {
        let lanes = lanes();
        lanes.claimed("a", 16, 16, None, false);
        lanes.all_ready();
        assert!(lanes.wanted().contains(&("b".into(), 16)));
    }

    #[test]
    fn a_lane_at_its_in_flight_limit_looks_again_when_its_attempt_finishes() {
        let lanes = lanes();
        lanes.claimed("a", 16, 1, Some(Wait::InFlight), false);
        lanes.claimed("b", 16, 0, Some(Wait::Paused), false);
        assert!(lanes.wanted().is_empty());
        lanes.finish("a");
        assert_eq!(lanes.wanted(), [("a".into(), 16)]);
    }
}
