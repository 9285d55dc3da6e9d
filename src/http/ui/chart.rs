//! The last hour of a destination as a small SVG drawn on the server: deliveries,
//! failures and backlog per minute, one row each, so that "when did it start failing,
//! and is it draining" is answered at a glance. No scripts; readable without colour:
//! the rows are labelled, failures are hatched, the backlog is a line, and the picture
//! has a text summary for screen readers and tooltips per minute.

use maud::{Markup, html};

use crate::domain::time::Timestamp;
use crate::store::{MinuteRow, minute_of};

const MINUTES: usize = 60;
const MINUTE_US: i64 = 60_000_000;

/// One destination's last hour, a slot per minute, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Hour {
    /// The start of the last (current) minute.
    pub last_minute: Timestamp,
    pub delivered: Vec<i64>,
    pub failed: Vec<i64>,
    /// `None`: no worker looked in that minute.
    pub backlog: Vec<Option<i64>>,
}

impl Hour {
    /// The hour up to `now` from one destination's rows (others and older ones are
    /// ignored).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a MinuteRow>, now: Timestamp) -> Self {
        let last_minute = minute_of(now);
        let first = last_minute.0 - (MINUTES as i64 - 1) * MINUTE_US;
        let mut hour = Self {
            last_minute,
            delivered: vec![0; MINUTES],
            failed: vec![0; MINUTES],
            backlog: vec![None; MINUTES],
        };
        for row in rows {
            let offset = row.minute.0 - first;
            if offset < 0 || offset % MINUTE_US != 0 {
                continue;
            }
            let Some(slot) = usize::try_from(offset / MINUTE_US)
                .ok()
                .filter(|s| *s < MINUTES)
            else {
                continue;
            };
            hour.delivered[slot] = row.delivered;
            hour.failed[slot] = row.failed;
            hour.backlog[slot] = row.backlog;
        }
        hour
    }

    fn slot_time(&self, slot: usize) -> Timestamp {
        Timestamp(self.last_minute.0 - (MINUTES - 1 - slot) as i64 * MINUTE_US)
    }

    /// What the picture shows, in words.
    pub fn summary(&self, name: &str) -> String {
        let delivered: i64 = self.delivered.iter().sum();
        let failed: i64 = self.failed.iter().sum();
        let mut text = format!("{name}, last hour: {delivered} delivered, {failed} failed");
        if let Some(first) = self.failed.iter().position(|f| *f > 0) {
            text.push_str(&format!(
                " (first failure at {})",
                clock(self.slot_time(first))
            ));
        }
        let peak = self
            .backlog
            .iter()
            .enumerate()
            .filter_map(|(slot, b)| b.map(|b| (slot, b)))
            .max_by_key(|(slot, b)| (*b, std::cmp::Reverse(*slot)));
        match (self.backlog.iter().rev().flatten().next(), peak) {
            (Some(now), Some((slot, peak))) if peak > 0 => text.push_str(&format!(
                "; backlog now {now}, at most {peak} at {}",
                clock(self.slot_time(slot))
            )),
            (Some(now), _) => text.push_str(&format!("; backlog now {now}")),
            (None, _) => {}
        }
        text
    }
}

/// `18:02`.
fn clock(at: Timestamp) -> String {
    at.to_rfc3339()[11..16].to_owned()
}

/// How big to draw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A destination's page: labelled rows, an axis.
    Full,
    /// A row of the destinations table: the shapes only, the words in its title.
    Compact,
}

const WIDTH: f64 = 600.0;
const LABEL: f64 = 110.0;

pub fn svg(name: &str, hour: &Hour, size: Size) -> Markup {
    let full = size == Size::Full;
    let (row_height, gap, axis) = if full {
        (34.0, 8.0, 16.0)
    } else {
        (14.0, 3.0, 0.0)
    };
    let left = if full { LABEL } else { 0.0 };
    let plot = WIDTH - left;
    let step = plot / MINUTES as f64;
    let bar = (step - 1.0).max(1.0);
    let height = 3.0 * (row_height + gap) + axis;
    let top = |row: usize| row as f64 * (row_height + gap);
    let delivered_max = self::max(&hour.delivered);
    let failed_max = self::max(&hour.failed);
    let backlog: Vec<i64> = hour.backlog.iter().map(|b| b.unwrap_or(0)).collect();
    let backlog_max = self::max(&backlog);
    let scale = |value: i64, max: i64| value as f64 / max.max(1) as f64 * row_height;
    let summary = hour.summary(name);
    let (width, drawn_height) = if full {
        ("100%", None)
    } else {
        ("240", Some("48"))
    };
    let hatch = format!("hatch-{name}");
    // The backlog as a step line through the minutes a worker looked at.
    let mut line = String::new();
    for (slot, value) in hour.backlog.iter().enumerate() {
        let Some(value) = value else { continue };
        let x = left + slot as f64 * step;
        let y = top(2) + row_height - scale(*value, backlog_max);
        let verb = if line.is_empty() { 'M' } else { 'L' };
        line.push_str(&format!("{verb}{x:.1},{y:.1}H{:.1}", x + step));
    }
    html! {
        svg class={ "chart " @if full { "full" } @else { "compact" } }
            role="img" width=(width) height=[drawn_height] viewBox={ "0 0 " (WIDTH) " " (height) }
            preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
            title { (summary) }
            defs {
                pattern id=(hatch) width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                    rect width="4" height="4" fill="#fff" {}
                    line x1="0" y1="0" x2="0" y2="4" stroke="#9b1c1c" stroke-width="2.2" {}
                }
            }
            @for row in 0..3 {
                rect x=(left) y=(top(row)) width=(plot) height=(row_height) fill="#f3f4f6" {}
                line x1=(left) x2=(WIDTH) y1=(top(row) + row_height) y2=(top(row) + row_height) stroke="#9aa3b0" stroke-width="1" {}
            }
            @if full {
                text x="0" y=(top(0) + 13.0) class="label" { "delivered/min" }
                text x="0" y=(top(0) + 27.0) class="scale" { "max " (delivered_max) }
                text x="0" y=(top(1) + 13.0) class="label" { "failed/min" }
                text x="0" y=(top(1) + 27.0) class="scale" { "max " (failed_max) }
                text x="0" y=(top(2) + 13.0) class="label" { "backlog" }
                text x="0" y=(top(2) + 27.0) class="scale" { "max " (backlog_max) }
                text x=(left) y=(height - 3.0) class="scale" { "−60 min" }
                text x=(left + plot / 2.0) y=(height - 3.0) class="scale" text-anchor="middle" { "−30 min" }
                text x=(WIDTH) y=(height - 3.0) class="scale" text-anchor="end" { "now (" (clock(hour.last_minute)) ")" }
            }
            @for slot in 0..MINUTES {
                @let x = left + slot as f64 * step;
                @let at = clock(hour.slot_time(slot));
                @if hour.delivered[slot] > 0 {
                    @let h = scale(hour.delivered[slot], delivered_max).max(1.0);
                    rect class="delivered" x=(fmt(x)) y=(fmt(top(0) + row_height - h)) width=(fmt(bar)) height=(fmt(h)) fill="#3b4556" {
                        title { (at) ": " (hour.delivered[slot]) " delivered" }
                    }
                }
                @if hour.failed[slot] > 0 {
                    @let h = scale(hour.failed[slot], failed_max).max(1.0);
                    rect class="failed" x=(fmt(x)) y=(fmt(top(1) + row_height - h)) width=(fmt(bar)) height=(fmt(h)) fill={ "url(#" (hatch) ")" } stroke="#9b1c1c" stroke-width="0.6" {
                        title { (at) ": " (hour.failed[slot]) " failed" }
                    }
                }
            }
            @if !line.is_empty() {
                path class="backlog" d=(line) fill="none" stroke="#1f5fbf" stroke-width="2" stroke-dasharray="5 2" {}
            }
        }
    }
}

fn max(values: &[i64]) -> i64 {
    values.iter().copied().max().unwrap_or(0)
}

fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_764_612_131_000_000); // 2025-12-01T18:02:11Z

    fn row(minutes_ago: i64, delivered: i64, failed: i64, backlog: Option<i64>) -> MinuteRow {
        MinuteRow {
            destination: "billing".into(),
            minute: Timestamp(minute_of(NOW).0 - minutes_ago * MINUTE_US),
            delivered,
            failed,
            backlog,
        }
    }

    #[test]
    fn rows_land_in_their_minute_and_older_ones_are_left_out() {
        let rows = [
            row(0, 5, 1, Some(2)),
            row(59, 7, 0, None),
            row(60, 100, 100, Some(100)),
        ];
        let hour = Hour::from_rows(&rows, NOW);
        assert_eq!(hour.delivered[59], 5);
        assert_eq!(hour.failed[59], 1);
        assert_eq!(hour.backlog[59], Some(2));
        assert_eq!(hour.delivered[0], 7);
        assert_eq!(hour.delivered.iter().sum::<i64>(), 12);
        assert_eq!(hour.backlog.iter().flatten().count(), 1);
    }

    #[test]
    fn the_summary_says_when_it_started_failing_and_whether_it_drains() {
        let rows = [
            row(30, 100, 0, Some(0)),
            row(20, 0, 12, Some(300)),
            row(10, 0, 3, Some(120)),
            row(0, 40, 0, Some(4)),
        ];
        let hour = Hour::from_rows(&rows, NOW);
        assert_eq!(
            hour.summary("billing"),
            "billing, last hour: 140 delivered, 15 failed (first failure at 17:42); \
             backlog now 4, at most 300 at 17:42"
        );
        assert_eq!(
            Hour::from_rows(&[], NOW).summary("idle"),
            "idle, last hour: 0 delivered, 0 failed"
        );
    }

    #[test]
    fn the_picture_has_a_title_labels_and_one_shape_per_busy_minute() {
        let rows = [row(20, 0, 12, Some(300)), row(0, 40, 0, Some(4))];
        let hour = Hour::from_rows(&rows, NOW);
        let full = svg("billing", &hour, Size::Full).into_string();
        assert!(
            full.contains("<title>billing, last hour: 40 delivered"),
            "{full}"
        );
        assert!(full.contains("delivered/min") && full.contains("failed/min"));
        assert_eq!(full.matches("class=\"delivered\"").count(), 1);
        assert_eq!(full.matches("class=\"failed\"").count(), 1);
        assert!(full.contains("<title>17:42: 12 failed</title>"), "{full}");
        assert!(full.contains("class=\"backlog\""));
        assert!(!full.contains("<script"));
        let compact = svg("billing", &hour, Size::Compact).into_string();
        assert!(!compact.contains("delivered/min"));
        assert!(compact.contains("width=\"240\""));
    }
}
