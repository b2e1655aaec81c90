//! The pages, compiled into the binary (no CDN, font or external script).

/// `(name, content type, bytes)` of every asset under `/ui/assets/`.
pub(crate) const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/login.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
];

pub(crate) const INDEX: &str = include_str!("../assets/index.html");
pub(crate) const LOGIN: &str = include_str!("../assets/login.html");

/// Every response of the dashboard carries these: scripts and styles only from this origin,
/// no framing, no inline script (so markup injected into a page could not run).
pub(crate) const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];
