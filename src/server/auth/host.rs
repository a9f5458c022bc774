//! What a request says about where it is going and where it comes from:
//! the `Host` it names (DNS-rebinding defence, parsed strictly) and, for a
//! browser's request without `Origin`, its `Sec-Fetch-Site`. The front door
//! ([`super::admit`]) refuses what these say no to.

use super::Security;
use crate::error_code::ErrorCode;
use crate::server::error::ApiError;
use axum::extract::Request;
use axum::http::{header, Method};

/// Parses a Host value (or an absolute-form target's authority) strictly:
/// a host name or an IP literal, then an optional `:port`, and nothing else.
/// Answers the host, lowercase, without its port (IPv6 literals keep their
/// brackets), or `None` for anything else: `127.0.0.1:9100@evil.example`,
/// a tab or space, a second colon, `user@`, an empty or non-numeric port.
/// A loose parse that only cut at the last colon let such values pass the
/// Host check as `127.0.0.1`.
pub(super) fn parse_host(value: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match value.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (value, None),
        };
        let well_formed = !name.is_empty()
            && name.len() <= 253
            && !name.starts_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !well_formed {
            return None;
        }
        (name.to_ascii_lowercase(), port)
    };
    if let Some(p) = port {
        let numeric = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
        if !numeric || p.parse::<u16>().is_err() {
            return None;
        }
    }
    Some(name)
}

/// The Host check (DNS-rebinding defence). The `Host` header and, for an
/// absolute-form request target (`GET http://name/path`), the target's
/// authority must each be one well-formed host ([`parse_host`]) this broker
/// serves. A request that names no host at all (HTTP/1.0 without `Host`) is
/// refused whenever the broker checks Host names: every browser and HTTP
/// client sends one, so only a request crafted to slip past the check lacks
/// it. A broker on a wildcard address checks no names (the token guards it)
/// and serves such requests, e.g. a load balancer's HTTP/1.0 health check.
pub(super) fn host_refusal(sec: &Security, req: &Request) -> Option<ApiError> {
    let mut values = req.headers().get_all(header::HOST).iter();
    let host = values.next();
    if values.next().is_some() {
        return Some(ApiError::new(
            ErrorCode::InvalidHeader,
            "the request has more than one Host header; send exactly one",
        ));
    }
    let mut named = Vec::with_capacity(2);
    if let Some(raw) = host {
        let Ok(text) = raw.to_str() else {
            return Some(ApiError::new(
                ErrorCode::InvalidHeader,
                "the Host header is not text",
            ));
        };
        named.push(("Host header", text));
    }
    if let Some(authority) = req.uri().authority() {
        named.push(("request target's host", authority.as_str()));
    }
    if named.is_empty() {
        return sec.allowed_hosts.is_some().then(|| {
            ApiError::new(
                ErrorCode::ForeignHost,
                "the request names no host: send a Host header with the broker's address (HTTP/1.0 requests without Host are refused, since every browser and HTTP client sends one)",
            )
        });
    }
    for (what, value) in named {
        let Some(name) = parse_host(value) else {
            return Some(ApiError::new(
                ErrorCode::InvalidHeader,
                format!("the {what} {value:?} is not a host name or IP address with an optional :port; send the broker's address, e.g. 127.0.0.1:9100"),
            ));
        };
        if !sec.host_allowed(&name) {
            return Some(ApiError::new(
                ErrorCode::ForeignHost,
                format!("Host {value:?} is not served by this broker; if you reach it through a proxy or another name, start it with --allowed-host {name}"),
            ));
        }
    }
    None
}

/// Refuses a browser's request from another site that carries no `Origin`
/// (browsers leave it off `<img>`, `<script>` and other no-cors GETs, which
/// could still take a peer's command off its queue). `Sec-Fetch-Site`
/// `cross-site` and `same-site` are both refused: a page on another port of
/// the same machine (`http://localhost:3000`) is "same-site" with the broker
/// but not its origin. `same-origin`, `none` (typed into the address bar)
/// and no header at all (curl, scripts) pass. The one exception is a
/// top-level navigation to the dashboard's page (a link to it from anywhere):
/// the page shows and changes nothing until it has the token, and the
/// dashboard's cookie is `SameSite=Strict`.
pub(super) fn fetch_site_refusal(req: &Request) -> Option<ApiError> {
    let headers = req.headers();
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())?
        .trim()
        .to_ascii_lowercase();
    if site != "cross-site" && site != "same-site" {
        return None;
    }
    let navigation = headers
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("navigate"));
    let page = matches!(req.uri().path(), "/" | "/dashboard" | "/dashboard/");
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if navigation && page && read {
        return None;
    }
    Some(ApiError::new(
        ErrorCode::ForeignOrigin,
        format!("a {site} browser request is refused (it comes from another web page); open the dashboard from the broker's own address instead"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(target: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn parses_hosts_strictly() {
        assert_eq!(parse_host("localhost:9100").as_deref(), Some("localhost"));
        assert_eq!(parse_host("LocalHost").as_deref(), Some("localhost"));
        assert_eq!(parse_host("[::1]:9100").as_deref(), Some("[::1]"));
        assert_eq!(parse_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_host("my_box.lan:80").as_deref(), Some("my_box.lan"));
        for bad in [
            "127.0.0.1:9100@evil.com",
            "127.0.0.1:9100\tevil.com",
            "127.0.0.1 evil.com",
            "user@127.0.0.1",
            "::1",
            "[::1",
            "[::1]x",
            "[evil.com]",
            "localhost:",
            "localhost:99999",
            "localhost:9100:1",
            "localhost:+80",
            "",
            ".",
            "a..b",
            "evil.com/x",
        ] {
            assert_eq!(parse_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_policy_refuses_foreign_hosts() {
        let s = Security::new(None, "127.0.0.1".parse().unwrap(), &[]);
        assert!(s.host_allowed("localhost"));
        assert!(s.host_allowed("127.0.0.1"));
        assert!(s.host_allowed("[::1]"));
        assert!(s.host_allowed("[0:0:0:0:0:0:0:1]"));
        assert!(!s.host_allowed("evil.example"));
    }

    #[test]
    fn a_request_without_a_host_is_refused_only_where_hosts_are_checked() {
        let loopback = Security::new(None, "127.0.0.1".parse().unwrap(), &[]);
        let e = host_refusal(&loopback, &request("/status", &[])).expect("refused");
        assert_eq!(e.code, ErrorCode::ForeignHost);
        // A wildcard bind checks no names: a health check without Host passes.
        let wildcard = Security::new(Some("t".repeat(20)), "0.0.0.0".parse().unwrap(), &[]);
        assert!(host_refusal(&wildcard, &request("/healthz", &[])).is_none());
        // Malformed is malformed everywhere.
        let e = host_refusal(&wildcard, &request("/", &[("host", "a:1@b")])).expect("refused");
        assert_eq!(e.code, ErrorCode::InvalidHeader);
    }

    #[test]
    fn an_absolute_form_target_must_name_an_allowed_host_too() {
        let s = Security::new(None, "127.0.0.1".parse().unwrap(), &[]);
        let r = request(
            "http://evil.example:9100/status",
            &[("host", "127.0.0.1:9100")],
        );
        assert_eq!(
            host_refusal(&s, &r).expect("refused").code,
            ErrorCode::ForeignHost
        );
        let r = request("http://127.0.0.1:9100/status", &[]);
        assert!(host_refusal(&s, &r).is_none());
    }

    #[test]
    fn cross_site_requests_without_origin_are_refused_but_links_to_the_page_work() {
        for site in ["cross-site", "same-site"] {
            let r = request("/commands", &[("sec-fetch-site", site)]);
            assert!(fetch_site_refusal(&r).is_some(), "{site}");
            let r = request(
                "/dashboard",
                &[("sec-fetch-site", site), ("sec-fetch-mode", "navigate")],
            );
            assert!(fetch_site_refusal(&r).is_none(), "{site} navigation");
            let r = request(
                "/status",
                &[("sec-fetch-site", site), ("sec-fetch-mode", "navigate")],
            );
            assert!(
                fetch_site_refusal(&r).is_some(),
                "{site} navigation to the API"
            );
        }
        for site in ["same-origin", "none"] {
            assert!(fetch_site_refusal(&request("/status", &[("sec-fetch-site", site)])).is_none());
        }
        assert!(fetch_site_refusal(&request("/status", &[])).is_none());
    }
}
