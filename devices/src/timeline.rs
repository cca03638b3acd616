//! Timestamps of boot events, for `--timings`.
//!
//! The guest decides how many events there are (each marker write is one), so the timeline keeps
//! the first `MAX_EVENTS` and only counts the rest: a guest writing a marker port in a loop costs
//! the host a counter, not memory.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events kept; later ones are counted and dropped. A Linux boot records a few dozen.
pub const MAX_EVENTS: usize = 1024;

pub struct Timeline {
    start: Instant,
    enabled: bool,
    events: Mutex<Events>,
}

#[derive(Default)]
struct Events {
    kept: Vec<(Duration, String)>,
    dropped: u64,
}

impl Timeline {
    /// A timeline measuring from `start`; when not `enabled`, recording costs nothing.
    pub fn new(start: Instant, enabled: bool) -> Self {
        Timeline {
            start,
            enabled,
            events: Mutex::new(Events::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records an event now. `what` is only built when the timeline is enabled and has room.
    pub fn record(&self, what: impl FnOnce() -> String) {
        if self.enabled {
            let at = self.start.elapsed();
            let mut events = crate::bus::lock(&self.events);
            if events.kept.len() < MAX_EVENTS {
                events.kept.push((at, what()));
            } else {
                events.dropped += 1;
            }
        }
    }

    /// The events kept so far, in the order they happened.
    pub fn events(&self) -> Vec<(Duration, String)> {
        let mut events = crate::bus::lock(&self.events).kept.clone();
        events.sort_by_key(|e| e.0);
        events
    }

    /// How many events came after the first `MAX_EVENTS` and were not kept.
    pub fn dropped(&self) -> u64 {
        crate::bus::lock(&self.events).dropped
    }

    /// One line per event: `[timings]  12.345 ms  what`, then a count of dropped events if any.
    pub fn render(&self) -> String {
        let mut out: String = self
            .events()
            .iter()
            .map(|(at, what)| format!("[timings] {:>9.3} ms  {what}\n", at.as_secs_f64() * 1000.0))
            .collect();
        let dropped = self.dropped();
        if dropped > 0 {
            out.push_str(&format!(
                "[timings] {dropped} later events not kept (at most {MAX_EVENTS} are)\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_timeline_records_nothing() {
        let t = Timeline::new(Instant::now(), false);
        t.record(|| unreachable!("not built when disabled"));
        assert!(t.events().is_empty());
    }

    #[test]
    fn renders_one_line_per_event() {
        let t = Timeline::new(Instant::now(), true);
        t.record(|| "vmm ready".into());
        t.record(|| "guest exit: status 0".into());
        let out = t.render();
        assert_eq!(out.lines().count(), 2);
        assert!(out.starts_with("[timings] "));
        assert!(out.contains(" ms  vmm ready\n"));
    }

    #[test]
    fn events_past_the_bound_are_counted_not_kept() {
        // Arrange
        let t = Timeline::new(Instant::now(), true);
        // Act
        for i in 0..MAX_EVENTS + 5 {
            t.record(|| format!("event {i}"));
        }
        // Assert
        assert_eq!(t.events().len(), MAX_EVENTS);
        assert_eq!(t.dropped(), 5);
        assert!(t
            .render()
            .ends_with("[timings] 5 later events not kept (at most 1024 are)\n"));
    }
}
