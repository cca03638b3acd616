//! Timestamps of boot events, for `--timings`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Timeline {
    start: Instant,
    enabled: bool,
    events: Mutex<Vec<(Duration, String)>>,
}

impl Timeline {
    /// A timeline measuring from `start`; when not `enabled`, recording costs nothing.
    pub fn new(start: Instant, enabled: bool) -> Self {
        Timeline {
            start,
            enabled,
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records an event now. `what` is only built when the timeline is enabled.
    pub fn record(&self, what: impl FnOnce() -> String) {
        if self.enabled {
            let at = self.start.elapsed();
            crate::bus::lock(&self.events).push((at, what()));
        }
    }

    /// The events so far, in the order they happened.
    pub fn events(&self) -> Vec<(Duration, String)> {
        let mut events = crate::bus::lock(&self.events).clone();
        events.sort_by_key(|e| e.0);
        events
    }

    /// One line per event: `[timings]  12.345 ms  what`.
    pub fn render(&self) -> String {
        self.events()
            .iter()
            .map(|(at, what)| format!("[timings] {:>9.3} ms  {what}\n", at.as_secs_f64() * 1000.0))
            .collect()
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
}
