//! The progress line a person at a terminal sees while a stream syncs: records, quarantined,
//! requests and rate-limit waits so far.
//!
//! It only draws on stderr, and only when asked (cron gets none); it must not log or steer the
//! runner: the stream's outcome and the log say what happened, the line only shows it meanwhile.

use tandem_connectors::http::RequestCounts;

/// A spinner line per stream on a terminal: records, quarantined, requests and rate-limit waits
/// so far. Does nothing when disabled.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn new(enabled: bool, source: &str, stream: &str) -> Self {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {prefix:<28} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_prefix(format!("{source}/{stream}"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// The line after `records` and `quarantined` records and the read's `requests` so far.
    fn message(records: usize, quarantined: usize, requests: &RequestCounts) -> String {
        let waited = requests.paced_ms / 1000;
        let limited = requests.rate_limited;
        let mut msg = format!("{records} records, {} requests", requests.requests);
        if quarantined > 0 {
            msg.push_str(&format!(", {quarantined} quarantined"));
        }
        if waited > 0 || limited > 0 {
            msg.push_str(&format!(", {waited} s waiting for rate limits"));
        }
        msg
    }

    pub(super) fn update(&self, records: usize, quarantined: usize, requests: &RequestCounts) {
        if let Some(bar) = &self.bar {
            bar.set_message(Self::message(records, quarantined, requests));
        }
    }

    pub(super) fn finish(&self, records: usize, quarantined: usize, requests: &RequestCounts, ok: bool) {
        if let Some(bar) = &self.bar {
            let mark = if ok { "done" } else { "FAILED" };
            bar.finish_with_message(format!(
                "{} — {mark}",
                Self::message(records, quarantined, requests)
            ));
        }
    }
}
