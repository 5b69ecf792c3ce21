//! Which role each route needs: the one table of it.

use axum::http::Method;
use platform::keys::Role;

/// What a request needs to be let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// Probes: answered for anyone.
    Public,
    /// No key needed, but the client address's rate limit applies (the dashboard's login page
    /// and its static files).
    Open,
    Role(Role),
}

/// `ingest` may only post events; `read` reads history, profiles, subscriptions,
/// recommendations, similar titles, titles, search, plans, metrics, QoE analytics, trending, live
/// sessions and continue-watching; everything else (commands, payments,
/// reports, fraud rings and risk, playback sessions, the dashboard `/ops`, and routes that do not
/// exist) needs `admin`. The dashboard's login page and static files need no key.
pub fn required(method: &Method, path: &str) -> Required {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = Required::Role(Role::Read);
    match (method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["healthz"] | ["readyz"]) => Required::Public,
        (&Method::GET | &Method::HEAD, ["ops", "login"] | ["ops", "assets", _]) => Required::Open,
        (&Method::POST, ["ops", "login" | "logout"]) => Required::Open,
        (&Method::POST, ["v1", "events"]) => Required::Role(Role::Ingest),
        (&Method::GET | &Method::HEAD, ["metrics"] | ["v1", "plans"]) => read,
        (&Method::GET | &Method::HEAD, ["v1", "users", _]) => read,
        (
            &Method::GET | &Method::HEAD,
            ["v1", "users", _, "history" | "recommendations" | "subscriptions"],
        ) => read,
        (&Method::GET | &Method::HEAD, ["v1", "titles", _, "similar"] | ["v1", "titles", _]) => {
            read
        }
        (&Method::GET | &Method::HEAD, ["v1", "search"]) => read,
        (
            &Method::GET | &Method::HEAD,
            ["v1", "analytics", "qoe" | "live"] | ["v1", "trending"],
        ) => read,
        (&Method::GET | &Method::HEAD, ["v1", "users", _, "sessions" | "continue-watching"]) => {
            read
        }
        _ => Required::Role(Role::Admin),
    }
}

/// Whether a key of `role` may do what needs `needed`.
pub fn allows(role: Role, needed: Role) -> bool {
    role == Role::Admin || role == needed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_roles_the_readme_says() {
        let cases = [
            (Method::GET, "/healthz", Required::Public),
            (Method::GET, "/readyz", Required::Public),
            (Method::POST, "/v1/events", Required::Role(Role::Ingest)),
            (
                Method::GET,
                "/v1/users/7/history",
                Required::Role(Role::Read),
            ),
            (Method::GET, "/v1/users/7", Required::Role(Role::Read)),
            (
                Method::GET,
                "/v1/users/7/recommendations",
                Required::Role(Role::Read),
            ),
            (Method::GET, "/v1/plans", Required::Role(Role::Read)),
            (
                Method::GET,
                "/v1/titles/7/similar",
                Required::Role(Role::Read),
            ),
            (Method::GET, "/v1/fraud/rings", Required::Role(Role::Admin)),
            (Method::GET, "/v1/titles/7", Required::Role(Role::Read)),
            (Method::GET, "/v1/search", Required::Role(Role::Read)),
            (Method::GET, "/v1/analytics/qoe", Required::Role(Role::Read)),
            (
                Method::GET,
                "/v1/analytics/live",
                Required::Role(Role::Read),
            ),
            (Method::GET, "/v1/trending", Required::Role(Role::Read)),
            (
                Method::GET,
                "/v1/users/7/sessions",
                Required::Role(Role::Read),
            ),
            (
                Method::GET,
                "/v1/users/7/continue-watching",
                Required::Role(Role::Read),
            ),
            (
                Method::POST,
                "/v1/analytics/qoe",
                Required::Role(Role::Admin),
            ),
            (Method::POST, "/v1/titles", Required::Role(Role::Admin)),
            (Method::PUT, "/v1/titles/7", Required::Role(Role::Admin)),
            (Method::DELETE, "/v1/titles/7", Required::Role(Role::Admin)),
            (
                Method::POST,
                "/v1/search/reindex",
                Required::Role(Role::Admin),
            ),
            (Method::GET, "/v1/users/7/risk", Required::Role(Role::Admin)),
            (Method::GET, "/metrics", Required::Role(Role::Read)),
            (Method::GET, "/ops", Required::Role(Role::Admin)),
            (Method::GET, "/ops/login", Required::Open),
            (Method::POST, "/ops/login", Required::Open),
            (Method::POST, "/ops/logout", Required::Open),
            (Method::GET, "/ops/assets/ops.js", Required::Open),
            (Method::GET, "/ops/assets", Required::Role(Role::Admin)),
            (
                Method::GET,
                "/v1/users/7/payments",
                Required::Role(Role::Admin),
            ),
            (Method::POST, "/v1/plans", Required::Role(Role::Admin)),
            (Method::POST, "/v1/users", Required::Role(Role::Admin)),
            (
                Method::POST,
                "/v1/subscriptions",
                Required::Role(Role::Admin),
            ),
            (Method::GET, "/v1/reports/mrr", Required::Role(Role::Admin)),
            (
                Method::POST,
                "/v1/playback-sessions",
                Required::Role(Role::Admin),
            ),
            (Method::GET, "/v1/events", Required::Role(Role::Admin)),
            (Method::GET, "/nowhere", Required::Role(Role::Admin)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(required(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn admin_does_everything_and_the_others_only_their_own() {
        for needed in [Role::Ingest, Role::Read, Role::Admin] {
            assert!(allows(Role::Admin, needed));
        }
        assert!(allows(Role::Ingest, Role::Ingest));
        assert!(!allows(Role::Ingest, Role::Read));
        assert!(!allows(Role::Read, Role::Ingest));
        assert!(!allows(Role::Read, Role::Admin));
    }
}
