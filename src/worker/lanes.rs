//! Each destination's lane through a worker: its own attempt slots, so that a slow or
//! dead destination holds only its own and never delays the others (isolation), and
//! whether a claim for it is worth making now.
//!
//! A lane sends at most `capacity` requests to its destination at once. Around them it
//! keeps the database's latency out of the way: as many deliveries again may be
//! claimed ahead, waiting for a request slot, and as many again may have their
//! outcomes being written (in groups, after the request). So a busy database slows a
//! lane's claims rather than leaving its request slots idle. An ordered destination
//! does neither: its next delivery of a key cannot start before the last one's outcome
//! is written, and a claim asking for more than its free keys reads every due delivery
//! looking for them. Its slots free up when outcomes are written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::domain::protection::Wait;

#[derive(Debug)]
struct Lane {
    /// Claimed deliveries whose request is not over: waiting for a request slot, or
    /// at the destination.
    running: usize,
    /// Attempts whose outcome is being written.
    recording: usize,
    /// A claim for it may find work.
    ready: bool,
    /// Its last claim filled every slot asked for: it waits for a few to free up
    /// before claiming again, so a busy lane claims in batches.
    saturated: bool,
    /// It waits for one of its attempts to finish (in-flight limit, busy keys, a probe).
    wake_on_finish: bool,
    /// Its request slots.
    requests: Arc<Semaphore>,
    /// It claims ahead and writes outcomes behind its request slots (not ordered).
    pipelined: bool,
}

pub struct Lanes {
    lanes: Mutex<BTreeMap<String, Lane>>,
    capacity: usize,
    /// Slots that free up after a saturated claim before the next one.
    refill: usize,
    finished: Notify,
}

impl Lanes {
    /// One lane per destination, each with `capacity` request slots, all ready; those
    /// marked `true` are pipelined (claim ahead, write outcomes behind).
    pub fn new(destinations: impl IntoIterator<Item = (String, bool)>, capacity: usize) -> Self {
        let lanes = destinations
            .into_iter()
            .map(|(name, pipelined)| {
                let lane = Lane {
                    running: 0,
                    recording: 0,
                    ready: true,
                    saturated: false,
                    wake_on_finish: false,
                    requests: Arc::new(Semaphore::new(capacity)),
                    pipelined,
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

    /// Waits for one of the lane's request slots (`None`: a lane it does not have,
    /// whose requests no slot holds back).
    pub async fn request_slot(&self, name: &str) -> Option<OwnedSemaphorePermit> {
        let requests = self.lanes.lock().ok()?.get(name)?.requests.clone();
        requests.acquire_owned().await.ok()
    }

    /// One of its requests is over; its outcome is being written.
    pub fn sent(&self, name: &str) {
        self.update(name, |lane| {
            if lane.pipelined {
                lane.running = lane.running.saturating_sub(1);
                lane.recording += 1;
                true
            } else {
                // Nothing changes until the outcome is written.
                false
            }
        });
    }

    /// An attempt's outcome is written (or given up on). A lane that waits for its
    /// attempts to finish (in-flight limit, busy keys, a probe) counts it here, not when
    /// the request is over: the database counts an attempt until its outcome is written.
    pub fn recorded(&self, name: &str) {
        self.update(name, |lane| {
            if lane.pipelined {
                lane.recording = lane.recording.saturating_sub(1);
            } else {
                lane.running = lane.running.saturating_sub(1);
            }
            if lane.wake_on_finish {
                lane.wake_on_finish = false;
                lane.ready = true;
            }
            true
        });
    }

    /// Applies `change` to the lane (which says whether it changed anything). The
    /// claimer is woken only when this makes the lane worth a claim: a busy lane frees
    /// several slots before it claims again, and waking the claimer for each finish in
    /// between would find nothing to do.
    fn update(&self, name: &str, change: impl FnOnce(&mut Lane) -> bool) {
        let wanted = match self.lanes.lock() {
            Ok(mut lanes) => lanes
                .get_mut(name)
                .is_some_and(|lane| change(lane) && self.room(lane).is_some()),
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
        let claimable = if lane.pipelined {
            2 * self.capacity
        } else {
            self.capacity
        };
        let unwritten = (claimable + self.capacity).saturating_sub(lane.running + lane.recording);
        let free = claimable.saturating_sub(lane.running).min(unwritten);
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
        Lanes::new([("a".to_owned(), true), ("b".to_owned(), true)], 16)
    }

    /// One attempt of `name`, its request and then its outcome, is over.
    fn done(lanes: &Lanes, name: &str) {
        lanes.sent(name);
        lanes.recorded(name);
    }

    #[test]
    fn a_slot_frees_when_its_request_is_over_not_when_its_outcome_is_written() {
        let lanes = lanes();
        lanes.claimed("b", 32, 0, None, false);
        lanes.claimed("a", 32, 32, None, false);
        lanes.sent("a");
        lanes.sent("a");
        assert_eq!(lanes.wanted(), [("a".into(), 2)]);
        // Outcomes being written: at most as many as the lane has request slots.
        lanes.claimed("a", 2, 2, None, false);
        for _ in 0..32 {
            lanes.sent("a");
        }
        // 34 unwritten: room for 14 more before 48 (16 + 32) are held.
        assert_eq!(lanes.wanted(), [("a".into(), 14)]);
        lanes.claimed("a", 14, 14, None, false);
        for _ in 0..14 {
            lanes.sent("a");
        }
        assert!(lanes.wanted().is_empty(), "48 outcomes unwritten");
        lanes.recorded("a");
        assert!(lanes.wanted().is_empty());
        lanes.recorded("a");
        assert_eq!(lanes.wanted(), [("a".into(), 2)]);
    }

    #[test]
    fn a_lane_held_by_the_database_looks_again_once_an_outcome_is_written() {
        let lanes = lanes();
        lanes.claimed("b", 32, 0, None, false);
        // At its in-flight limit, counted by the database until outcomes are written.
        lanes.claimed("a", 32, 3, Some(Wait::InFlight), false);
        lanes.sent("a");
        assert!(lanes.wanted().is_empty());
        lanes.recorded("a");
        assert_eq!(lanes.wanted(), [("a".into(), 30)]);
    }

    /// Whether a request of `name` would wait for a slot.
    async fn waits(lanes: &Lanes, name: &str) -> bool {
        let slot = lanes.request_slot(name);
        tokio::time::timeout(std::time::Duration::from_millis(20), slot)
            .await
            .is_err()
    }

    #[test]
    fn an_ordered_lane_claims_nothing_ahead_and_frees_slots_as_outcomes_are_written() {
        let lanes = Lanes::new([("ordered".to_owned(), false)], 16);
        assert_eq!(lanes.wanted(), [("ordered".into(), 16)]);
        lanes.claimed("ordered", 16, 16, None, false);
        lanes.sent("ordered");
        lanes.sent("ordered");
        assert!(lanes.wanted().is_empty(), "its keys are busy until written");
        lanes.recorded("ordered");
        lanes.recorded("ordered");
        assert_eq!(lanes.wanted(), [("ordered".into(), 2)]);
    }

    #[tokio::test]
    async fn a_lane_sends_at_most_its_capacity_of_requests_at_once() {
        let lanes = lanes();
        let mut held = Vec::new();
        for _ in 0..16 {
            held.push(lanes.request_slot("a").await.expect("slot"));
        }
        assert!(waits(&lanes, "a").await, "a 17th request waits");
        assert!(!waits(&lanes, "b").await, "another destination does not");
        held.pop();
        assert!(!waits(&lanes, "a").await);
    }

    #[test]
    fn a_lane_that_filled_its_slots_claims_again_once_a_few_free_up() {
        let lanes = lanes();
        // 16 request slots, and as many deliveries again claimed ahead.
        assert_eq!(lanes.wanted(), [("a".into(), 32), ("b".into(), 32)]);
        lanes.claimed("a", 32, 32, None, false);
        lanes.claimed("b", 32, 0, None, false);
        // b found nothing: it waits for new work; a waits for two slots (16 / 8).
        assert!(lanes.wanted().is_empty());
        done(&lanes, "a");
        assert!(lanes.wanted().is_empty());
        done(&lanes, "a");
        assert_eq!(lanes.wanted(), [("a".into(), 2)]);
        lanes.all_ready();
        assert_eq!(lanes.wanted(), [("a".into(), 2), ("b".into(), 32)]);
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
        lanes.claimed("a", 32, 32, None, false);
        lanes.claimed("b", 32, 3, Some(Wait::InFlight), false);
        // a needs two free slots (16 / 8): its first finish wakes nobody.
        done(&lanes, "a");
        assert!(!woken(&lanes).await);
        done(&lanes, "a");
        assert!(woken(&lanes).await);
        // b waits for one of its attempts to finish: the first one wakes the claimer.
        done(&lanes, "b");
        assert!(woken(&lanes).await);
        // An idle lane (its claim found less than it asked for) waits for new work.
        lanes.claimed("b", 32, 0, None, false);
        done(&lanes, "b");
        assert!(!woken(&lanes).await);
    }

    #[test]
    fn a_slow_destination_holds_only_its_own_slots() {
        let lanes = lanes();
        lanes.claimed("a", 32, 32, None, false);
        lanes.all_ready();
        assert!(lanes.wanted().contains(&("b".into(), 32)));
    }

    #[test]
    fn a_lane_at_its_in_flight_limit_looks_again_when_its_attempt_finishes() {
        let lanes = lanes();
        lanes.claimed("a", 32, 1, Some(Wait::InFlight), false);
        lanes.claimed("b", 32, 0, Some(Wait::Paused), false);
        assert!(lanes.wanted().is_empty());
        done(&lanes, "a");
        assert_eq!(lanes.wanted(), [("a".into(), 32)]);
    }
}
