//! The Prometheus text exposition format (version 0.0.4), the one every scraper reads.

use std::fmt::Write;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::{
    CANCEL_REASONS, Gauges, Limit, Metrics, OTHER, STATUS_MIN, STATUS_SLOTS, UNMATCHED_ROUTE,
};
use crate::upstream::UpstreamError;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);

        header(
            &mut out,
            "streamgate_requests_total",
            "counter",
            "HTTP requests answered, by route pattern and status (499: the client left before an answer).",
        );
        let route_names = self.routes.iter().copied().chain([UNMATCHED_ROUTE]);
        for (r, route) in route_names.enumerate() {
            for slot in 0..STATUS_SLOTS {
                let count = self
                    .requests
                    .get(r * STATUS_SLOTS + slot)
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                if count > 0 {
                    let status = usize::from(STATUS_MIN) + slot;
                    let _ = writeln!(
                        out,
                        "streamgate_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                    );
                }
            }
        }

        header(
            &mut out,
            "streamgate_active_streams",
            "gauge",
            "Generations running now.",
        );
        let _ = writeln!(out, "streamgate_active_streams {}", gauges.active_streams);

        header(
            &mut out,
            "streamgate_registry_streams",
            "gauge",
            "Browser streams held in memory for resume on this replica, running or finished.",
        );
        let _ = writeln!(
            out,
            "streamgate_registry_streams {}",
            gauges.registry_streams
        );

        header(
            &mut out,
            "streamgate_time_to_first_token_seconds",
            "histogram",
            "From a request's arrival to its first token going to the client, by model.",
        );
        {
            let models = self.ttft.lock().unwrap_or_else(PoisonError::into_inner);
            for (model, histogram) in models.iter() {
                let labels = format!("model=\"{}\",", escape(model));
                histogram.render(&mut out, "streamgate_time_to_first_token_seconds", &labels);
            }
        }
        if self.ttft_other.count() > 0 {
            let labels = format!("model=\"{OTHER}\",");
            self.ttft_other
                .render(&mut out, "streamgate_time_to_first_token_seconds", &labels);
        }

        header(
            &mut out,
            "streamgate_overhead_seconds",
            "histogram",
            "Time the gateway itself added to the first event: the client's time to it minus the upstream's.",
        );
        self.overhead
            .render(&mut out, "streamgate_overhead_seconds", "");

        header(
            &mut out,
            "streamgate_inter_token_seconds",
            "histogram",
            "Gaps between consecutive tokens sent to clients.",
        );
        self.inter_token
            .render(&mut out, "streamgate_inter_token_seconds", "");

        header(
            &mut out,
            "streamgate_tokens_total",
            "counter",
            "Tokens, from the upstream's usage or the gateway's estimate when it gives none.",
        );
        for (kind, counter) in [
            ("prompt", &self.prompt_tokens),
            ("completion", &self.completion_tokens),
        ] {
            let _ = writeln!(
                out,
                "streamgate_tokens_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "streamgate_upstream_errors_total",
            "counter",
            "Failed upstream attempts (retried ones included), by kind.",
        );
        for (kind, counter) in UpstreamError::KINDS.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "streamgate_upstream_errors_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "streamgate_rate_limited_total",
            "counter",
            "Requests refused by a rate or concurrency limit, by limit.",
        );
        for (limit, counter) in Limit::ALL.iter().zip(&self.rate_limited) {
            let _ = writeln!(
                out,
                "streamgate_rate_limited_total{{limit=\"{}\"}} {}",
                limit.label(),
                counter.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "streamgate_stream_cancellations_total",
            "counter",
            "Generations ended before the upstream finished, by reason.",
        );
        for (reason, counter) in CANCEL_REASONS.iter().zip(&self.cancellations) {
            let _ = writeln!(
                out,
                "streamgate_stream_cancellations_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the format requires: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_name_cannot_break_out_of_its_label() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
