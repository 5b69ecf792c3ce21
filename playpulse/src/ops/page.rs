//! The dashboard's markup. The server renders what it knows when the page is asked for (the
//! engines it runs on, which sections apply); `assets/ops.js` fills in the numbers. Each
//! number's element carries `data-tile`, and its raw value `data-value`, for scripts and tests.

use maud::{html, Markup, DOCTYPE};

use super::REFRESH;

/// What the page says about the service it watches.
#[derive(Debug, Clone)]
pub struct PageFacts {
    pub version: &'static str,
    /// `embedded` or `cassandra`.
    pub sink: String,
    /// `memory` or `redis`.
    pub cache: String,
    pub side_paths: Vec<&'static str>,
    /// `/readyz`'s names of the ports, with what to call them: the sink and the cache first
    /// (the service is down without them), then those that degrade.
    pub ports: Vec<Port>,
    /// QoE and trending tiles (`analytics.enabled`).
    pub analytics: bool,
    /// Recommendation freshness and the outbox (`platform.enabled`).
    pub platform: bool,
}

#[derive(Debug, Clone)]
pub struct Port {
    /// Its key in `/readyz`.
    pub key: &'static str,
    pub label: String,
    /// Down means the service is not ready; otherwise it only degrades.
    pub required: bool,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href="/ops/assets/uPlot.min.css";
            link rel="stylesheet" href="/ops/assets/ops.css";
        }
    }
}

/// A number with its label; `sub` holds a second line.
fn tile(key: &str, label: &str, unit: &str, sub: Option<&str>) -> Markup {
    html! {
        div.tile {
            div.label { (label) }
            div.value {
                span data-tile=(key) data-value="" { "–" }
                @if !unit.is_empty() { span.unit { (unit) } }
            }
            @if let Some(sub) = sub {
                div.sub data-tile=(format!("{key}_sub")) { (sub) }
            }
        }
    }
}

/// A chart's frame; the script draws into it.
fn chart(key: &str, title: &str) -> Markup {
    html! {
        figure.chart {
            figcaption { (title) }
            div data-chart=(key) {}
        }
    }
}

pub fn dashboard(facts: &PageFacts, logged_in: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("PlayPulse · operations"))
            body data-refresh-ms=(REFRESH.as_millis()) data-analytics=(facts.analytics)
                data-platform=(facts.platform) {
                header {
                    h1 { "PlayPulse" span.muted { " operations" } }
                    div.facts {
                        span { "v" (facts.version) }
                        span { "events: " b { (facts.sink) } }
                        span { "cache: " b { (facts.cache) } }
                        span { "side paths: " b { (facts.side_paths.join(" → ")) } }
                    }
                    div.status {
                        span #refresh-state data-state="starting" { "connecting…" }
                        span #updated-at.muted {}
                        @if logged_in {
                            form method="post" action="/ops/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    section.engines aria-label="Engines" {
                        @for port in &facts.ports {
                            div.port data-port=(port.key) data-required=(port.required)
                                data-state="unknown" {
                                span.dot {}
                                span.name { (port.label) }
                                span.state { "…" }
                            }
                        }
                    }
                    section.tiles aria-label="Ingest" {
                        (tile("accepted_rate", "Events accepted", "/s", Some("")))
                        (tile("rejected_rate", "Events rejected", "/s", Some("")))
                        (tile("ack_p99", "Acknowledgement p99", "ms", Some("")))
                        (tile("sink_p99", "Sink write p99", "ms", Some("")))
                        (tile("queue_depth", "Queue depth", "events", Some("")))
                        (tile("in_flight_bytes", "In flight", "bytes", Some("")))
                        (tile("sink_errors", "Sink errors", "", Some("")))
                        (tile("invalidation_lag_p99", "Invalidation lag p99", "ms", Some("")))
                    }
                    section.charts aria-label="Charts" {
                        (chart("events", "Events per second"))
                        (chart("latency", "Acknowledgement and sink write, ms"))
                        (chart("queue", "Queue depth, events"))
                    }
                    section.panels {
                        div.panel {
                            h2 { "Rejections by reason" }
                            table.reasons data-tile="rejected_reasons" {
                                tr { td.muted colspan="3" { "none yet" } }
                            }
                        }
                        @if facts.analytics {
                            div.panel {
                                h2 { "QoE, last 15 minutes" }
                                div.minis {
                                    (tile("concurrent_viewers", "Concurrent viewers", "", None))
                                    (tile("startup_p95", "Startup p95", "ms", None))
                                    (tile("rebuffer_pct", "Rebuffering", "%", None))
                                    (tile("failure_pct", "Playback failures", "%", None))
                                    (tile("analytics_lag", "Analytics lag", "s", None))
                                }
                                h3 { "Hurting viewers most" }
                                table.worst data-tile="qoe_worst" {
                                    tr { td.muted { "no data yet" } }
                                }
                            }
                            div.panel {
                                h2 { "Trending now" }
                                ol.trending data-tile="trending" {
                                    li.muted { "no plays yet" }
                                }
                            }
                        }
                        @if facts.platform {
                            div.panel {
                                h2 { "Recommendations" }
                                div.minis {
                                    (tile("recs_age", "Last refresh", "s ago", None))
                                    (tile("recs_users_rate", "Lists refreshed", "/s", None))
                                    (tile("recs_failures", "Failed rounds", "", None))
                                    (tile("outbox_rate", "Outbox events", "/s", None))
                                }
                            }
                        }
                    }
                }
                footer.muted {
                    "Numbers from " a href="/metrics" { "/metrics" } ", health from "
                    a href="/readyz" { "/readyz" } "; refreshed every "
                    (REFRESH.as_secs()) " s while this tab is visible."
                }
                script src="/ops/assets/uPlot.iife.min.js" {}
                script src="/ops/assets/ops.js" {}
            }
        }
    }
}

pub fn login(problem: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("PlayPulse · log in"))
            body.login {
                form method="post" action="/ops/login" {
                    h1 { "PlayPulse" span.muted { " operations" } }
                    p { "The dashboard needs an admin API key (" code { "playpulse keys create --role admin" } ")." }
                    @if let Some(problem) = problem {
                        p.problem role="alert" { (problem) }
                    }
                    label for="key" { "API key" }
                    input #key name="key" type="password" autocomplete="current-password"
                        placeholder="pp_…" required autofocus;
                    button type="submit" { "Open the dashboard" }
                }
            }
        }
    }
}
