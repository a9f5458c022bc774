//! The web dashboard, end to end: its HTTP surface (content types, CSP, the
//! token login) over plain HTTP, and the page itself in real headless
//! Chromium driven through chromedriver.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`. Without
//! them it prints a skip notice (straight to stderr, so `cargo test` shows
//! it), except under CI (`CI=true` or `CI=1`; `CI=false` is not CI), where
//! it fails.
//! It always writes its screenshots under the target dir; `CIPC_SCREENSHOT=1`
//! also copies the README's ones to `docs/` (`docs/dashboard.png`,
//! `docs/dashboard-needs-you.png`, `docs/dashboard-permissions.png`), and
//! `CIPC_SCREENSHOT=<file name>` only that one (e.g.
//! `CIPC_SCREENSHOT=dashboard-needs-you.png`).
//!
//! (A file of one concern, the dashboard in a real browser; long because each panel has its scenario.)

mod common;
mod webdriver;

use cipc::broker::BrokerConfig;
use cipc::server::ServerConfig;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use webdriver::{browser_or_skip, Browser, BrowserPaths, ENTER, TAB};

/// Whether chromium and chromedriver can be found where
/// [`browser_or_skip`] looks (`CIPC_CHROMIUM` / `CIPC_CHROMEDRIVER`, else
/// the usual names on `PATH`).
fn browser_installed() -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
    };
    let found = |var: &str, names: &[&str]| match std::env::var_os(var) {
        Some(p) => Path::new(&p).is_file(),
        None => names.iter().any(|n| on_path(n)),
    };
    found(
        "CIPC_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    ) && found("CIPC_CHROMEDRIVER", &["chromedriver"])
}

/// The browser for `test`, or `None` after a skip notice ([`common::skip`]:
/// under CI a missing browser fails the test instead).
fn browser_for(test: &str) -> Option<BrowserPaths> {
    if browser_installed() {
        return browser_or_skip(test);
    }
    common::skip(
        test,
        "needs chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver; or set CIPC_CHROMIUM and CIPC_CHROMEDRIVER)",
    );
    None
}

#[tokio::test]
async fn dashboard_http_surface() {
    let broker = common::start_with_token("surface-token").await;
    let base = broker.url();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // `/` sends people to the dashboard.
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/dashboard");

    // The page is public, strict about scripts, and carries no data.
    let r = http.get(format!("{base}/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("/dashboard/assets/app.js"));
    assert!(!html.contains("<script>"), "no inline script in the page");

    for (path, ty) in [
        ("/dashboard/assets/app.js", "text/javascript"),
        ("/dashboard/assets/style.css", "text/css"),
        ("/dashboard/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{path}"
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }

    // What the page learns before logging in: only these two facts.
    let (s, b) = common::get(&format!("{base}/dashboard/login")).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"tokenRequired": true, "authorized": false}));

    // A wrong token: 401 with the contract's error shape, and no cookie.
    let r = http
        .post(format!("{base}/dashboard/login"))
        .json(&json!({"token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "unauthorized");
    assert!(b["error"]["message"].as_str().unwrap().contains("wrong"));

    // A foreign page cannot log in on the person's behalf.
    let r = http
        .post(format!("{base}/dashboard/login"))
        .header("origin", "http://evil.example")
        .json(&json!({"token": "surface-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The right token: an HttpOnly, SameSite=Strict session cookie that opens the API.
    let r = http
        .post(format!("{base}/dashboard/login"))
        .json(&json!({"token": "surface-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("cipc_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    let id = pair.trim_start_matches("cipc_session=");
    assert!(id.len() >= 43, "32 random bytes, base64: {id}");
    let r = http
        .get(format!("{base}/status"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/dashboard/login"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["authorized"], true);
    // Without the cookie the API stays closed.
    let (s, _) = common::get(&format!("{base}/status")).await;
    assert_eq!(s, 401);

    // Logging out forgets the session.
    let r = http
        .post(format!("{base}/dashboard/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{base}/status"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Without a token configured, the page needs no login.
    let open = common::start().await;
    let (s, b) = common::get(&format!("{}/dashboard/login", open.url())).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"tokenRequired": false, "authorized": true}));
}

/// A REST client that sends `token` (when given) the way the CLI does.
fn authed(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert("x-cipc-token", t.parse().unwrap());
    }
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> Value {
    let r = c.post(&url).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {v}");
    v
}

async fn connect(c: &reqwest::Client, base: &str, role: &str, name: &str, caps: &[&str]) -> String {
    let v = post(
        c,
        format!("{base}/peers/connect"),
        json!({"role": role, "name": name, "capabilities": caps}),
    )
    .await;
    v["peer"]["id"].as_str().unwrap().to_string()
}

/// Takes the next command for `peer` (REST long-poll), as a real session would.
async fn take(c: &reqwest::Client, base: &str, peer: &str) -> Value {
    let v: Value = c
        .get(format!("{base}/commands/{peer}/wait?timeout=10000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["command"].is_object(),
        "no command arrived for {peer}: {v}"
    );
    v["command"].clone()
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Copies a README screenshot to `docs/` when `CIPC_SCREENSHOT` asks for it
/// (`1` for all of them, or a comma-separated list of file names).
fn publish_screenshot(shot: &Path) {
    let Some(want) = std::env::var_os("CIPC_SCREENSHOT") else {
        return;
    };
    let want = want.to_string_lossy();
    let name = shot.file_name().unwrap().to_string_lossy();
    if want.trim() != "1" && !want.split(',').any(|w| w.trim() == name) {
        return;
    }
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(&*name);
    std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
    std::fs::copy(shot, &docs).unwrap();
    eprintln!("screenshot saved to {}", docs.display());
}

/// Reads `GET /events{query}` (with `Last-Event-ID` when given) until `n`
/// events came; answers their (id, kind).
async fn read_events(
    base: &str,
    query: &str,
    last_id: Option<u64>,
    n: usize,
) -> Vec<(String, String)> {
    let mut rb = common::http().get(format!("{base}/events{query}"));
    if let Some(id) = last_id {
        rb = rb.header("last-event-id", id.to_string());
    }
    let mut r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200, "/events{query}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("/events{query}: only {out:?} within 10 s"))
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            if let Some(kind) = field("event:") {
                out.push((field("id:").unwrap_or_default(), kind));
            }
        }
    }
    out
}

/// The history the dashboard's activity feed starts with: `/events?since=N`
/// replays the kept events after N, and a browser's `Last-Event-ID` (sent
/// when it resumes) wins over it, so a reconnect never repeats an event.
#[tokio::test]
async fn events_since_replays_the_kept_history() {
    let broker = common::start().await;
    let base = broker.url();
    common::connect(&base, "backend").await;
    common::connect(&base, "frontend").await;
    let (s, _) = common::post(&format!("{base}/signals/built"), json!({})).await;
    assert_eq!(s, 200);

    // Event ids start from the clock (so they never repeat across
    // restarts) and go up by one.
    let all = read_events(&base, "?since=0", None, 3).await;
    let first: u64 = all[0].0.parse().expect("a numeric event id");
    let ids: Vec<_> = all.iter().map(|(id, k)| format!("{id} {k}")).collect();
    assert_eq!(
        ids,
        [
            format!("{first} peer"),
            format!("{} peer", first + 1),
            format!("{} signal", first + 2)
        ]
    );
    let third = ((first + 2).to_string(), "signal".to_string());
    assert_eq!(
        read_events(&base, &format!("?since={}", first + 1), None, 1).await,
        std::slice::from_ref(&third)
    );
    assert_eq!(
        read_events(&base, "?since=0", Some(first + 1), 1).await,
        [third],
        "Last-Event-ID wins over since"
    );
    let (s, e) = common::get(&format!("{base}/events?since=soon")).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["reason"], "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(paths) = browser_for("dashboard_in_headless_chromium") else {
        return;
    };
    let browser = Browser::start(&paths, 1440, 1000).await;
    live_view_and_command_center(&browser).await;
    needs_you(&browser).await;
    permissions(&browser).await;
    leases(&browser).await;
    token_login(&browser).await;
    if let Some(log) = browser.console().await {
        let bad: Vec<_> = log
            .iter()
            .filter(|(level, msg)| {
                level == "SEVERE"
                    // Expected: the 401 of a wrong login, streams cut when a broker
                    // stops, and the 409 of an answer that came second.
                    && !msg.contains("/dashboard/login")
                    && !msg.contains("/events")
                    && !msg.contains("/answer")
            })
            .collect();
        assert!(bad.is_empty(), "browser console errors: {bad:#?}");
    } else {
        common::skip(
            "dashboard_in_headless_chromium's console check",
            "this chromedriver does not hand out the browser log (/se/log)",
        );
    }
    browser.quit();
}

async fn live_view_and_command_center(b: &Browser) {
    let broker = common::start().await;
    let base = broker.url();
    let c = authed(None);

    // The page loads, goes live, and says what to do when nothing is there.
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#conn-state", "live").await;
    b.wait_text("#peers-list", "No peers yet").await;
    b.wait_text("#peers-list", "cipc peers connect backend")
        .await;

    // A peer connected over REST appears without a reload.
    b.js("window.__sameDocument = true; return true;", json!([]))
        .await;
    let backend = connect(&c, &base, "backend", "api-server", &["rust", "sqlite"]).await;
    let card = b
        .wait_text(&format!("#peers-list [data-id='{backend}']"), "backend")
        .await;
    assert!(
        card.contains("api-server") && card.contains("rust"),
        "{card}"
    );
    assert!(
        card.contains("online") && card.contains("last seen"),
        "{card}"
    );
    assert!(card.contains("http"), "{card}");
    assert_eq!(
        b.js("return window.__sameDocument === true;", json!([]))
            .await,
        json!(true),
        "the page reloaded instead of updating live"
    );

    // The Command Center: invalid params are caught inline, before sending.
    b.click("#cmd-target-chips [data-target='backend']").await;
    assert_eq!(
        b.js(
            "return document.getElementById('cmd-target').value;",
            json!([])
        )
        .await,
        json!("backend")
    );
    b.fill("#cmd-action", "run-tests").await;
    b.fill("#cmd-params", "{\"suite\": unit}").await;
    b.wait_text("#cmd-error", "not valid JSON").await;
    b.click("#cmd-send").await;
    let sent: Value = c
        .get(format!("{base}/commands"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sent["commands"],
        json!([]),
        "invalid params must not be sent"
    );

    // Valid params: Send posts it, the peer takes it, the UI follows.
    b.fill(
        "#cmd-params",
        "{\"suite\": \"unit\", \"note\": \"<b>bold?</b>\"}",
    )
    .await;
    b.wait_js(
        "the params error clears",
        "return document.getElementById('cmd-error').hidden;",
        json!([]),
    )
    .await;
    b.click("#cmd-send").await;
    let cmd = take(&c, &base, &backend).await;
    assert_eq!(cmd["from"], "dashboard");
    assert_eq!(cmd["target"], "backend");
    assert_eq!(cmd["action"], "run-tests");
    assert_eq!(
        cmd["params"],
        json!({"suite": "unit", "note": "<b>bold?</b>"})
    );
    let id = cmd["id"].as_str().unwrap().to_string();
    let row = format!("#commands-list [data-id='{id}']");
    b.wait_js(
        "the command shows as delivered",
        "const e = document.querySelector(arguments[0]); return e && e.dataset.status === 'delivered';",
        json!([row]),
    )
    .await;
    b.wait_text(&row, "taken by backend (api-server)").await;
    b.wait_text(
        &format!("#peers-list [data-id='{backend}'] .working"),
        "run-tests",
    )
    .await;

    // The ack from the test client (a session doing its work) comes back live.
    post(
        &c,
        format!("{base}/commands/{id}/ack"),
        json!({"result": {"passed": 42, "failed": 0}}),
    )
    .await;
    b.wait_js(
        "the command shows as acked",
        "const e = document.querySelector(arguments[0]); return e && e.dataset.status === 'acked';",
        json!([row]),
    )
    .await;
    let acked = b.wait_text(&row, "\"passed\": 42").await;
    assert!(acked.contains("acked"), "{acked}");
    b.wait_text(
        &format!("#peers-list [data-id='{backend}'] .working"),
        "idle",
    )
    .await;
    b.wait_text("#activity-list", "run-tests acked").await;

    // Cancel a pending command from the list.
    post(
        &c,
        format!("{base}/commands/send"),
        json!({"from": "orchestrator", "target": "docs", "action": "write-changelog"}),
    )
    .await;
    let pending = b
        .wait_js(
            "the pending command appears",
            "const e = [...document.querySelectorAll('#commands-list .cmd-pending')].find(x => x.innerText.includes('write-changelog')); return e ? e.dataset.id : null;",
            json!([]),
        )
        .await;
    let pending = pending.as_str().unwrap().to_string();
    b.click(&format!("#commands-list [data-id='{pending}'] .cmd-cancel"))
        .await;
    b.wait_js(
        "the command shows as cancelled",
        "const e = document.querySelector(arguments[0]); return e && e.dataset.status === 'cancelled';",
        json!([format!("#commands-list [data-id='{pending}']")]),
    )
    .await;
    let v: Value = c
        .get(format!("{base}/commands?status=cancelled"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["commands"][0]["id"], json!(pending));

    // Signals: one from REST shows up; one emitted from the page reaches the broker.
    post(
        &c,
        format!("{base}/signals/build-done"),
        json!({"data": {"sha": "3f2a9c1"}}),
    )
    .await;
    b.wait_text("#signals-list [data-name='build-done']", "3f2a9c1")
        .await;
    b.fill("#sig-name", "deploy-ready").await;
    b.fill("#sig-data", "{\"env\": \"staging\"}").await;
    b.click("#sig-emit").await;
    b.wait_text("#signals-list [data-name='deploy-ready']", "emitted")
        .await;
    let v: Value = c
        .get(format!("{base}/signals/deploy-ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["signal"]["emitted"], true);
    assert_eq!(v["signal"]["data"], json!({"env": "staging"}));
    b.click("#signals-list [data-name='deploy-ready'] .sig-clear")
        .await;
    b.wait_js(
        "the cleared signal shows as clear",
        "const e = document.querySelector(\"#signals-list [data-name='deploy-ready']\"); return e && e.dataset.emitted === 'false';",
        json!([]),
    )
    .await;

    // A channel message that tries to inject markup and script is shown as text.
    let evil = "<script>window.__xss = 1; alert(1)</script>";
    let evil_img = "<img src=x onerror=window.__xss=2;alert(2)>";
    post(
        &c,
        format!("{base}/channels/notes/send"),
        json!({"text": evil, "html": evil_img}),
    )
    .await;
    b.click("#channels-list [data-name='notes']").await;
    let shown = b.wait_text("#messages", "<script>window.__xss = 1").await;
    assert!(shown.contains(evil_img), "{shown}");
    let injected = b
        .js(
            "return {scripts: document.querySelectorAll('#app script, #messages img, #activity-list img, #activity-list script').length, xss: window.__xss === undefined ? null : window.__xss};",
            json!([]),
        )
        .await;
    assert_eq!(
        injected,
        json!({"scripts": 0, "xss": null}),
        "markup from a message was interpreted"
    );
    assert_eq!(b.alert_text().await, None, "a script from a message ran");
    // The pretty-printed JSON is in a <pre>, as text.
    let pre = b
        .js(
            "return document.querySelector('#messages .message pre').textContent;",
            json!([]),
        )
        .await;
    let pre: Value = serde_json::from_str(pre.as_str().unwrap()).unwrap();
    assert_eq!(pre, json!({"text": evil, "html": evil_img}));
    // New messages arrive live in the open channel, and the count follows.
    post(
        &c,
        format!("{base}/channels/notes/send"),
        json!({"text": "second"}),
    )
    .await;
    b.wait_text("#messages", "second").await;
    b.wait_text("#channels-list [data-name='notes'] .count-pill", "2")
        .await;
    // Posting from the page.
    b.fill("#msg-data", "{\"text\": \"from the dashboard\"}")
        .await;
    b.click("#msg-send").await;
    b.wait_text("#messages", "from the dashboard").await;
    let v: Value = c
        .get(format!("{base}/channels/notes/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["messages"][2]["data"],
        json!({"text": "from the dashboard"})
    );

    // The activity feed filters by kind.
    b.click("#activity-filter [data-kind='signal']").await;
    b.wait_js(
        "only signal entries are listed",
        "const k = [...document.querySelectorAll('#activity-list .act')].map(e => e.dataset.kind); return k.length > 0 && k.every(x => x === 'signal');",
        json!([]),
    )
    .await;
    b.click("#activity-filter [data-kind='all']").await;

    // Populate a realistic board and take the screenshot for the README.
    populate(&c, &base).await;
    b.click("#channels-list [data-name='builds']").await;
    b.wait_text("#messages", "cargo test").await;
    b.wait_text("#peers-list", "linux-client").await;
    b.wait_text("#commands-list", "update-deps").await;
    b.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;", json!([]))
        .await;
    b.fill("#cmd-params", "{\"suite\": \"unit\"}").await;
    b.js(
        "document.activeElement && document.activeElement.blur(); return true;",
        json!([]),
    )
    .await;
    b.window_size(1440, 1350).await;
    let shot = screenshot_path("dashboard.png");
    b.screenshot(&shot).await;
    publish_screenshot(&shot);
    b.color_scheme("dark").await;
    b.screenshot(&screenshot_path("dashboard-dark.png")).await;
    b.color_scheme("light").await;
    // The responsive layouts, for a person to look at (not checked in).
    b.window_size(1024, 1200).await;
    b.screenshot(&screenshot_path("dashboard-medium.png")).await;
    b.window_size(420, 1200).await;
    b.screenshot(&screenshot_path("dashboard-narrow.png")).await;
    b.window_size(1440, 1000).await;
    eprintln!("screenshots in {}", shot.parent().unwrap().display());

    // A reset clears the view.
    post(&c, format!("{base}/reset"), json!({})).await;
    b.wait_text("#peers-list", "No peers yet").await;
    b.wait_text("#commands-list", "No commands yet").await;
    b.wait_text("#channels-list", "No channels yet").await;
    b.wait_text("#activity-list", "reset").await;

    // A dropped connection shows as reconnecting.
    let addr = broker.addr;
    broker.stop().await;
    b.wait_text("#conn-state", "reconnecting").await;

    // The broker comes back where it was: the page reconnects by itself,
    // notices it is a new broker, reloads, and follows it live again.
    let again = cipc::server::RunningServer::start_at(
        addr,
        cipc::broker::Broker::in_memory(Default::default()),
        Default::default(),
        None,
    )
    .await
    .expect("restart on the same port");
    b.wait_text("#conn-state", "live").await;
    connect(&c, &base, "after-restart", "back", &[]).await;
    b.wait_text("#peers-list", "after-restart").await;
    again.stop().await;
}

/// A peer registered with `"protect": true`, the way Claude Code hooks and
/// the CLI connect: answers (id, key).
async fn connect_protected(
    c: &reqwest::Client,
    base: &str,
    role: &str,
    name: &str,
) -> (String, String) {
    let v = post(
        c,
        format!("{base}/peers/connect"),
        json!({"role": role, "name": name, "protect": true, "via": "hook"}),
    )
    .await;
    (
        v["peer"]["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

async fn title(b: &Browser) -> String {
    b.js("return document.title;", json!([]))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_title(b: &Browser, want: &str) {
    b.wait_js(
        &format!("the tab title becomes {want:?}"),
        "return document.title === arguments[0];",
        json!([want]),
    )
    .await;
}

/// Asks a question the way an agent does (REST here; the MCP tool is the
/// same broker call); answers its id.
async fn ask(c: &reqwest::Client, base: &str, body: Value) -> String {
    let v = post(c, format!("{base}/questions"), body).await;
    assert_eq!(v["question"]["status"], "open", "{v}");
    v["question"]["id"].as_str().unwrap().to_string()
}

/// An MCP client of the broker over streamable HTTP, as Claude Code is.
async fn mcp_agent(base: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::ServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{base}/mcp"));
    ().serve(transport).await.expect("MCP initialize over /mcp")
}

/// `GET url` as JSON.
async fn get_json(c: &reqwest::Client, url: String) -> Value {
    c.get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// The agent's side of a question: waits for the answer as its tool call does.
fn wait_for_answer(c: &reqwest::Client, base: &str, id: &str) -> tokio::task::JoinHandle<Value> {
    let (c, url) = (
        c.clone(),
        format!("{base}/questions/{id}/wait?timeout=20000"),
    );
    tokio::spawn(async move {
        c.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    })
}

/// "Needs you": what waits on the person, live, with the history on load.
async fn needs_you(b: &Browser) {
    // A quick sweeper, so a 200 ms deadline is noticed within tens of ms.
    let broker = common::start_with(
        BrokerConfig {
            sweep_interval: Duration::from_millis(25),
            ..Default::default()
        },
        ServerConfig::default(),
        None,
    )
    .await;
    let base = broker.url();
    let c = authed(None);
    let dashboard = format!("{base}/dashboard");

    // Before the page opens: a peer connects and an agent asks a question.
    connect(&c, &base, "planner", "roadmap", &["plan"]).await;
    let early = ask(
        &c,
        &base,
        json!({"from": "planner", "text": "Which milestone first?", "choices": ["M1", "M2"]}),
    )
    .await;

    // On load: the activity starts with the broker's history, not empty, and
    // the open question is already in Needs you (from GET /questions).
    b.goto(&dashboard).await;
    b.wait_text("#conn-state", "live").await;
    b.wait_text("#activity-list", "planner (roadmap) connected via http")
        .await;
    b.wait_text("#activity-list", "planner asks: Which milestone first?")
        .await;
    let early_card = format!("#needs-list [data-id='{early}']");
    b.wait_text(&early_card, "Which milestone first?").await;
    wait_title(b, "(1) cipc dashboard").await;
    assert_eq!(
        b.js(
            "return getComputedStyle(document.getElementById('needs-you')).display !== 'none' && document.getElementById('needs-you').getBoundingClientRect().top < document.querySelector('main.grid').getBoundingClientRect().top;",
            json!([])
        )
        .await,
        json!(true),
        "Needs you is shown above everything else"
    );

    // Notifications only with the person's say-so: the button asks, never the load.
    let notify_label = b.text("#notify").await;
    assert_eq!(notify_label, "Notify me");
    let granted = b.grant("notifications").await;
    if granted {
        // Record notifications the page sends (the real ones go to the desktop).
        b.js(
            "window.__notes = []; const N = window.Notification; window.Notification = class extends N { constructor(t, o) { window.__notes.push([t, o && o.body]); super(t, o); } }; return true;",
            json!([]),
        )
        .await;
        b.click("#notify").await;
        b.wait_text("#notify", "Notifying").await;
    } else {
        common::skip(
            "the dashboard's notification check",
            "this chromedriver cannot grant the notification permission",
        );
    }

    // An agent (a real MCP client, as Claude Code is) connects as backend
    // and asks with choices through ask_human, whose call waits for the answer.
    let agent = mcp_agent(&base).await;
    let (_, me, _) = common::mcp::call(&agent, "connect", json!({"role": "backend"})).await;
    let key = me["peerKey"].as_str().expect("peerKey").to_string();
    let waiter = tokio::spawn(async move {
        let r = common::mcp::call(
            &agent,
            "ask_human",
            json!({
                "text": "Run the migration on prod? <b>now</b>",
                "choices": ["yes", "no", "later"],
                "context": {"migration": "0042_orders_index", "rows": 1200000, "note": "<img src=x onerror=window.__xss=3>"},
                "timeout_seconds": 60,
                "peer_key": key,
            }),
        )
        .await;
        let _ = agent.cancel().await;
        r
    });
    let qid = {
        let found = async {
            loop {
                let open = get_json(&c, format!("{base}/questions?status=open")).await;
                let asked = open["questions"].as_array().and_then(|qs| {
                    qs.iter()
                        .find(|q| q["text"] == "Run the migration on prod? <b>now</b>")
                        .and_then(|q| q["id"].as_str().map(str::to_string))
                });
                if let Some(id) = asked {
                    break id;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), found)
            .await
            .expect("the agent's question is open")
    };
    let card = format!("#needs-list [data-id='{qid}']");
    // Shown as text: the markup in the question and its context stays inert.
    let shown = b
        .wait_text(&card, "Run the migration on prod? <b>now</b>")
        .await;
    assert!(shown.contains("from backend"), "{shown}");
    assert!(
        b.text(&format!("{card} .need-context"))
            .await
            .contains("0042_orders_index"),
        "the context is shown"
    );
    wait_title(b, "(2) cipc dashboard").await;
    // One click answers, and the agent's tool call returns that choice.
    b.click(&format!("{card} button[data-choice='no']")).await;
    let (said, answered, is_error) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the agent's ask_human returns")
        .unwrap();
    assert!(
        !is_error && said.starts_with("The person answered: no"),
        "{said}"
    );
    assert_eq!(answered["question"]["status"], "answered", "{answered}");
    assert_eq!(answered["question"]["answer"], "no");
    assert_eq!(answered["question"]["answeredBy"], "dashboard");
    assert!(
        answered.get("timedOut").is_none_or(|t| t == false),
        "{answered}"
    );
    b.wait_js(
        "the answered question leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([card]),
    )
    .await;
    wait_title(b, "(1) cipc dashboard").await;
    b.wait_text("#activity-list", "dashboard answered backend: no")
        .await;

    // A question without choices: a text box and an Answer button.
    let free = ask(
        &c,
        &base,
        json!({"from": "docs", "text": "What should the release be called?"}),
    )
    .await;
    let waiter = wait_for_answer(&c, &base, &free);
    let free_card = format!("#needs-list [data-id='{free}']");
    let shown = b
        .wait_text(&free_card, "What should the release be called?")
        .await;
    assert!(
        !shown.contains("null"),
        "no context, and no word of it: {shown}"
    );
    b.fill(&format!("{free_card} input"), "Aurora").await;
    b.click(&format!("{free_card} .answer-send")).await;
    let answered = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the agent's wait returns")
        .unwrap();
    assert_eq!(answered["question"]["answer"], "Aurora", "{answered}");
    b.wait_js(
        "the answered question leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([free_card]),
    )
    .await;

    // Answered elsewhere (another dashboard, the CLI): it leaves this page too.
    let elsewhere = ask(
        &c,
        &base,
        json!({"from": "ops", "text": "Restart the staging cluster?", "choices": ["yes", "no"]}),
    )
    .await;
    let elsewhere_card = format!("#needs-list [data-id='{elsewhere}']");
    b.wait_text(&elsewhere_card, "Restart the staging cluster?")
        .await;
    post(
        &c,
        format!("{base}/questions/{elsewhere}/answer"),
        json!({"answer": "yes", "by": "lead"}),
    )
    .await;
    b.wait_js(
        "a question answered elsewhere leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([elsewhere_card]),
    )
    .await;

    // Someone else answers first: the click gets a 409 and says so inline.
    // (A synchronous request from the page holds its event loop, so the click
    // lands before the page hears of the other answer: the race, made certain.)
    b.js(
        "const x = new XMLHttpRequest(); x.open('POST', `/questions/${arguments[0]}/answer`, false); x.setRequestHeader('Content-Type', 'application/json'); x.send(JSON.stringify({answer: 'M1', by: 'lead'})); document.querySelector(arguments[1]).click(); return x.status;",
        json!([early, format!("{early_card} button[data-choice='M2']")]),
    )
    .await;
    let note = b.wait_text(&early_card, "Already answered by lead").await;
    assert!(note.contains("M1"), "{note}");
    let v: Value = c
        .get(format!("{base}/questions/{early}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["question"]["answer"], "M1",
        "the second answer changed nothing"
    );
    wait_title(b, "cipc dashboard").await;
    b.click(&format!("{early_card} .need-dismiss")).await;
    b.wait_js(
        "Needs you hides when empty",
        "return document.getElementById('needs-you').hidden;",
        json!([]),
    )
    .await;

    // An order past its deadline: the peer takes it and never acks.
    let (backend, key) = connect_protected(&c, &base, "backend", "api-server").await;
    post(
        &c,
        format!("{base}/commands/send"),
        json!({"from": "orchestrator", "target": "backend", "action": "migrate-db", "deadline": 200}),
    )
    .await;
    let taken: Value = c
        .get(format!("{base}/commands/{backend}/wait?timeout=10000"))
        .header("x-cipc-peer-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let late = taken["command"]["id"].as_str().expect("taken").to_string();
    let late_card = format!("#needs-list [data-kind='overdue'][data-id='{late}']");
    let shown = b.wait_text(&late_card, "late").await;
    assert!(shown.contains("migrate-db"), "{shown}");
    assert!(shown.contains("held by backend (api-server)"), "{shown}");
    wait_title(b, "(1) cipc dashboard").await;
    let v: Value = c
        .get(format!("{base}/commands?overdue=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["commands"][0]["id"], json!(late));

    // A session that needs the person (set with its own key, as hooks do).
    let attention = "waiting for permission: Bash(rm -rf build)";
    let r = c
        .put(format!("{base}/peers/{backend}/attention"))
        .header("x-cipc-peer-key", &key)
        .json(&json!({"attention": attention}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let shown = b
        .wait_text(
            &format!("#needs-list [data-kind='attention'][data-id='{backend}']"),
            attention,
        )
        .await;
    assert!(shown.contains("backend"), "{shown}");
    wait_title(b, "(2) cipc dashboard").await;

    // An order for a role nobody online holds.
    let v = post(
        &c,
        format!("{base}/commands/send"),
        json!({"from": "orchestrator", "target": "release-manager", "action": "tag-release", "params": {"version": "1.4.0"}}),
    )
    .await;
    assert_eq!(v["queued"], true);
    let orphan = v["command"]["id"].as_str().unwrap().to_string();
    b.wait_text(
        &format!("#needs-list [data-kind='orphan'][data-id='{orphan}']"),
        "Nobody online holds the role release-manager",
    )
    .await;
    wait_title(b, "(3) cipc dashboard").await;
    assert_eq!(
        b.text("#needs-count").await,
        "3",
        "the area counts what waits"
    );

    // With the person's permission, new items were announced as they came.
    if granted {
        let notes = b
            .wait_js(
                "notifications for the new items",
                "return (window.__notes || []).length >= 3 && window.__notes;",
                json!([]),
            )
            .await;
        let text = notes.to_string();
        for want in [
            "Overdue: migrate-db",
            "backend (api-server) needs you",
            "Nobody can take tag-release",
        ] {
            assert!(text.contains(want), "no notification {want:?} in {text}");
        }
        assert!(
            !text.contains("Which milestone"),
            "the question there on load was not news: {text}"
        );
    }

    // A reload shows the same: open questions and overdue commands are part
    // of the state loaded, and the history fills the activity once.
    let reload_q = ask(
        &c,
        &base,
        json!({
            "from": "frontend",
            "text": "Ship the new onboarding flow to 10% of users?",
            "choices": ["Ship it", "Hold", "Needs design review"],
            "context": {"pr": 812, "checks": "all green", "preview": "https://preview.example/onboarding", "changed": ["src/Onboarding.tsx", "src/Welcome.tsx", "src/api/flags.ts"]},
        }),
    )
    .await;
    b.goto(&dashboard).await;
    b.wait_text("#conn-state", "live").await;
    b.wait_text(
        &format!("#needs-list [data-id='{reload_q}']"),
        "Ship the new onboarding flow",
    )
    .await;
    b.wait_text(&late_card, "late").await;
    wait_title(b, "(4) cipc dashboard").await;
    let connects = b
        .js(
            "return [...document.querySelectorAll('#activity-list .act')].filter(e => e.innerText.includes('planner (roadmap) connected via')).length;",
            json!([]),
        )
        .await;
    assert_eq!(connects, json!(1), "each event once in the activity feed");
    assert_eq!(
        b.js("return window.__xss === undefined && document.querySelectorAll('#needs-you img, #needs-you script').length === 0;", json!([]))
            .await,
        json!(true),
        "markup from agents was interpreted"
    );

    // The README's picture: a team at work with things waiting on the person.
    populate(&c, &base).await;
    b.wait_text("#peers-list", "linux-client").await;
    b.js(
        "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;",
        json!([]),
    )
    .await;
    b.window_size(1440, 1100).await;
    let shot = screenshot_path("dashboard-needs-you.png");
    b.screenshot(&shot).await;
    publish_screenshot(&shot);
    b.color_scheme("dark").await;
    b.screenshot(&screenshot_path("dashboard-needs-you-dark.png"))
        .await;
    b.color_scheme("light").await;
    b.window_size(420, 1200).await;
    b.screenshot(&screenshot_path("dashboard-needs-you-narrow.png"))
        .await;
    b.window_size(1440, 1000).await;
    assert!(title(b).await.starts_with("(4)"), "{}", title(b).await);
    broker.stop().await;
}

/// Fills the broker with a plausible team at work, for the screenshot.
async fn populate(c: &reqwest::Client, base: &str) {
    let frontend = connect(c, base, "frontend", "web-ui", &["typescript", "vite"]).await;
    let linux = connect(c, base, "linux-client", "build-box", &["gtk", "x11"]).await;
    connect(c, base, "orchestrator", "lead", &["plan"]).await;
    post(
        c,
        format!("{base}/commands/send"),
        json!({"from": "orchestrator", "target": "frontend", "action": "build-ui", "params": {"target": "release"}}),
    )
    .await;
    let cmd = take(c, base, &frontend).await;
    post(
        c,
        format!("{base}/commands/{}/ack", cmd["id"].as_str().unwrap()),
        json!({"error": "vite: 2 type errors in src/Peers.tsx"}),
    )
    .await;
    post(
        c,
        format!("{base}/commands/send"),
        json!({"from": "dashboard", "target": "linux-client", "action": "package-deb", "params": {"arch": "amd64"}}),
    )
    .await;
    take(c, base, &linux).await;
    post(
        c,
        format!("{base}/commands/send"),
        json!({"from": "orchestrator", "target": "backend", "action": "update-deps", "params": {"crate": "axum"}}),
    )
    .await;
    for (i, step) in ["cargo build", "cargo test", "cargo clippy"]
        .iter()
        .enumerate()
    {
        post(
            c,
            format!("{base}/channels/builds/send"),
            json!({"step": step, "ok": true, "seconds": 12 + i * 7}),
        )
        .await;
    }
    // A peer that left, to show the offline state.
    let gone = connect(c, base, "docs", "writer", &["markdown"]).await;
    let r = c
        .delete(format!("{base}/peers/{gone}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn token_login(b: &Browser) {
    let token = "correct-horse-battery-staple";
    let broker = common::start_with_token(token).await;
    let base = broker.url();
    let c = authed(Some(token));
    connect(&c, &base, "secret-role", "hidden", &[]).await;

    // The page asks for the token and shows nothing before it has it.
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#login", "needs a token").await;
    assert_eq!(
        b.js(
            "return document.getElementById('logout').hidden;",
            json!([])
        )
        .await,
        json!(true),
        "no log-out button before logging in"
    );
    b.screenshot(&screenshot_path("dashboard-login.png")).await;
    assert!(!b.text("body").await.contains("secret-role"));
    assert_eq!(
        b.js("return document.getElementById('app').hidden;", json!([]))
            .await,
        json!(true)
    );

    // A wrong token says so.
    b.fill("#login-token", "not-the-token").await;
    b.click("#login-submit").await;
    b.wait_text("#login-error", "Wrong token").await;
    b.screenshot(&screenshot_path("dashboard-login-wrong.png"))
        .await;
    assert!(!b.text("body").await.contains("secret-role"));

    // The right one logs in; the stream and the API then work on the cookie.
    b.fill("#login-token", token).await;
    b.click("#login-submit").await;
    b.wait_text("#peers-list", "secret-role").await;
    b.wait_text("#conn-state", "live").await;
    let url = b.js("return location.href;", json!([])).await;
    assert!(
        !url.as_str().unwrap().contains(token),
        "the token must never be in the URL"
    );
    assert_eq!(
        b.js("return document.cookie;", json!([])).await,
        json!(""),
        "the session cookie must be HttpOnly"
    );
    connect(&c, &base, "late-joiner", "new", &[]).await;
    b.wait_text("#peers-list", "late-joiner").await;

    // After a reload the cookie keeps the session: no second prompt.
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#peers-list", "late-joiner").await;
    assert_eq!(
        b.js("return document.getElementById('login').hidden;", json!([]))
            .await,
        json!(true)
    );

    // Logging out forgets the session: the page asks again, even after a reload.
    b.click("#logout").await;
    b.wait_text("#login", "needs a token").await;
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#login", "needs a token").await;
    assert!(!b.text("body").await.contains("late-joiner"));
}

/// A Claude Code session as its hooks connect it: protected, via `hook`,
/// with its agent named; answers (id, key).
async fn connect_session(
    c: &reqwest::Client,
    base: &str,
    role: &str,
    name: &str,
    agent: &str,
) -> (String, String) {
    let v = post(
        c,
        format!("{base}/peers/connect"),
        json!({"role": role, "name": name, "protect": true, "via": "hook", "agent": agent}),
    )
    .await;
    assert_eq!(v["peer"]["agent"], agent, "{v}");
    (
        v["peer"]["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// A permission prompt as the PermissionRequest hook posts it: kind
/// `permission`, allow/deny, the tool and its input, in the session's name.
async fn ask_permission(
    c: &reqwest::Client,
    base: &str,
    (peer, key): (&str, &str),
    tool: &str,
    input: Value,
) -> String {
    let r = c
        .post(format!("{base}/questions"))
        .header("x-cipc-peer", peer)
        .header("x-cipc-peer-key", key)
        .json(&json!({
            "text": format!("Allow {tool}?"),
            "choices": ["allow", "deny"],
            "kind": "permission",
            "context": {"tool": tool, "input": input, "cwd": "/home/dev/shop", "session": "3f6c0e2a"},
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status} {v}");
    assert_eq!(v["question"]["kind"], "permission", "{v}");
    assert_eq!(v["question"]["peer"], peer, "{v}");
    v["question"]["id"].as_str().unwrap().to_string()
}

/// Waits until the broker has the question answered; answers it.
async fn answered(c: &reqwest::Client, base: &str, id: &str) -> Value {
    let v = get_json(c, format!("{base}/questions/{id}/wait?timeout=10000")).await;
    assert_eq!(v["question"]["status"], "answered", "{v}");
    v["question"].clone()
}

/// Permission prompts in "Needs you": which session, the tool and what it
/// will do, Allow and Deny (with a note), by mouse and by keyboard, as text
/// only; every decision in the activity feed.
async fn permissions(b: &Browser) {
    let broker = common::start().await;
    let base = broker.url();
    let c = authed(None);
    let (peer, key) = connect_session(&c, &base, "backend", "api-server", "claude-code").await;
    let me = (peer.as_str(), key.as_str());
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#conn-state", "live").await;
    // What the page sends when it answers, to check the note it sends
    // apart from what the broker keeps.
    b.js(
        "window.__answers = []; const f = window.fetch; window.fetch = (url, init) => { if (String(url).endsWith('/answer')) window.__answers.push(JSON.parse(init.body)); return f(url, init); }; return true;",
        json!([]),
    )
    .await;

    // The peers table says which agent each session is.
    b.wait_text(
        &format!("#peers-list [data-id='{peer}'] .agent"),
        "Claude Code",
    )
    .await;

    // A Bash prompt: the whole command, multi-line, markup in it inert.
    let command = "cargo build --release &&\n  echo '<img src=x onerror=window.__xss=4>' > out.html &&\n  rm -rf target/tmp";
    let bash = ask_permission(
        &c,
        &base,
        me,
        "Bash",
        json!({"command": command, "description": "Build and clean up"}),
    )
    .await;
    let card = format!("#needs-list [data-kind='permission'][data-id='{bash}']");
    let shown = b.wait_text(&card, "Bash wants to run a command").await;
    for want in [
        "backend (api-server)",
        "Claude Code",
        "Build and clean up",
        "/home/dev/shop",
    ] {
        assert!(shown.contains(want), "no {want:?} in {shown}");
    }
    assert!(!shown.contains("null"), "{shown}");
    assert_eq!(
        b.js(
            "return document.querySelector(arguments[0] + ' .perm-command').textContent;",
            json!([card])
        )
        .await,
        json!(command),
        "the command is shown whole, as text"
    );
    assert_eq!(
        b.js(
            "return window.__xss === undefined && document.querySelectorAll('#needs-you img, #needs-you script').length === 0;",
            json!([])
        )
        .await,
        json!(true),
        "markup in a command was interpreted"
    );
    let labels = b
        .js(
            "return [...document.querySelectorAll(arguments[0] + ' .perm-choices button')].map(e => [e.textContent, e.getAttribute('aria-label')]);",
            json!([card]),
        )
        .await;
    assert_eq!(
        labels,
        json!([
            ["Allow", "Allow backend (api-server) to use Bash"],
            ["Deny", "Deny backend (api-server) the use of Bash"]
        ])
    );
    wait_title(b, "(1) cipc dashboard").await;
    b.wait_text("#needs-summary", "1 permission request").await;

    // Allow, with the mouse: the broker has it answered, the card leaves.
    b.click(&format!("{card} .perm-allow")).await;
    let q = answered(&c, &base, &bash).await;
    assert_eq!(q["answer"], "allow");
    assert_eq!(q["answeredBy"], "dashboard");
    b.wait_js(
        "the allowed prompt leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([card]),
    )
    .await;
    b.wait_text(
        "#activity-list",
        "dashboard allowed backend (api-server) Bash: cargo build --release",
    )
    .await;

    // An Edit: the file, and the old and new text as a before/after block.
    let edit = ask_permission(
        &c,
        &base,
        me,
        "Edit",
        json!({"file_path": "/home/dev/shop/src/orders.rs", "old_string": "fn total(&self) -> u32 {\n    self.items.len()", "new_string": "fn total(&self) -> u64 {\n    self.items.iter().map(|i| i.price).sum()"}),
    )
    .await;
    let card = format!("#needs-list [data-kind='permission'][data-id='{edit}']");
    let shown = b.wait_text(&card, "Edit wants to edit a file").await;
    assert!(shown.contains("/home/dev/shop/src/orders.rs"), "{shown}");
    let before = b.text(&format!("{card} .diff-old pre")).await;
    let after = b.text(&format!("{card} .diff-new pre")).await;
    assert_eq!(before, "fn total(&self) -> u32 {\n    self.items.len()");
    assert_eq!(
        after,
        "fn total(&self) -> u64 {\n    self.items.iter().map(|i| i.price).sum()"
    );

    // Deny with a note: the note travels with the answer.
    b.fill(&format!("{card} .perm-note"), "Keep u32; see the API")
        .await;
    // The card is redrawn when its session changes (here: reconnects as
    // another agent); what was typed stays, and so does the focus.
    let r = c
        .post(format!("{base}/peers/connect"))
        .header("x-cipc-peer-key", &key)
        .json(&json!({"id": peer, "role": "backend", "name": "api-server", "protect": true, "via": "hook", "agent": "codex"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    b.wait_text(&format!("{card} .agent"), "Codex").await;
    assert_eq!(
        b.js(
            "const e = document.querySelector(arguments[0] + ' .perm-note'); return [e.value, document.activeElement === e, e.selectionStart];",
            json!([card])
        )
        .await,
        json!(["Keep u32; see the API", true, 21])
    );
    b.press(" docs").await;
    b.click(&format!("{card} .perm-deny")).await;
    let q = answered(&c, &base, &edit).await;
    assert_eq!(q["answer"], "deny");
    assert_eq!(q["note"], "Keep u32; see the API docs", "{q}");
    b.wait_js(
        "the denied prompt leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([card]),
    )
    .await;
    b.wait_text(
        "#activity-list",
        "dashboard denied backend (api-server) Edit: /home/dev/shop/src/orders.rs · note: Keep u32; see the API docs",
    )
    .await;

    // The keyboard alone: Tab reaches Allow (with a visible focus ring), Enter presses it.
    let ls = ask_permission(&c, &base, me, "Bash", json!({"command": "ls -la /etc"})).await;
    let card = format!("#needs-list [data-kind='permission'][data-id='{ls}']");
    b.wait_text(&card, "ls -la /etc").await;
    b.js(
        "document.querySelector(arguments[0] + ' .perm-command').focus(); return true;",
        json!([card]),
    )
    .await;
    b.press(TAB).await;
    let focus = b
        .js(
            "const e = document.activeElement; return [e.dataset.choice || '', e.matches(':focus-visible'), getComputedStyle(e).outlineStyle];",
            json!([]),
        )
        .await;
    assert_eq!(
        focus,
        json!(["allow", true, "solid"]),
        "Tab leads to Allow, visibly"
    );
    b.press(ENTER).await;
    assert_eq!(answered(&c, &base, &ls).await["answer"], "allow");

    // And Deny by keyboard: Tab past Allow and Deny to the note, type, Enter.
    let rm = ask_permission(&c, &base, me, "Bash", json!({"command": "rm -rf /"})).await;
    let card = format!("#needs-list [data-kind='permission'][data-id='{rm}']");
    b.wait_text(&card, "rm -rf /").await;
    b.js(
        "document.querySelector(arguments[0] + ' .perm-command').focus(); return true;",
        json!([card]),
    )
    .await;
    b.press(&format!("{TAB}{TAB}{TAB}")).await;
    assert_eq!(
        b.js(
            "return document.activeElement.classList.contains('perm-note');",
            json!([])
        )
        .await,
        json!(true),
        "the tab order is Allow, Deny, the note"
    );
    b.press(&format!("Never on /{ENTER}")).await;
    let q = answered(&c, &base, &rm).await;
    assert_eq!(q["answer"], "deny");
    assert_eq!(q["note"], "Never on /", "{q}");
    // What the page sent: each answer by the dashboard, a note only with a denial.
    assert_eq!(
        b.js("return window.__answers;", json!([])).await,
        json!([
            {"answer": "allow", "by": "dashboard"},
            {"answer": "deny", "by": "dashboard", "note": "Keep u32; see the API docs"},
            {"answer": "allow", "by": "dashboard"},
            {"answer": "deny", "by": "dashboard", "note": "Never on /"},
        ])
    );

    // Other tools: what each will do, and anything else as its input's JSON.
    let fetch = ask_permission(
        &c,
        &base,
        me,
        "WebFetch",
        json!({"url": "https://docs.rs/axum/latest/axum/", "prompt": "How do I add SSE?"}),
    )
    .await;
    let write = ask_permission(
        &c,
        &base,
        me,
        "Write",
        json!({"file_path": "notes/todo.md", "content": "# Todo\n- <script>window.__xss=5</script>\n"}),
    )
    .await;
    let mcp = ask_permission(
        &c,
        &base,
        me,
        "mcp__github__create_issue",
        json!({"repo": "acme/shop", "title": "Flaky test", "labels": ["ci"]}),
    )
    .await;
    let shown = b
        .wait_text(
            &format!("#needs-list [data-id='{fetch}']"),
            "https://docs.rs/axum/latest/axum/",
        )
        .await;
    assert!(shown.contains("How do I add SSE?"), "{shown}");
    let shown = b
        .wait_text(&format!("#needs-list [data-id='{write}']"), "notes/todo.md")
        .await;
    assert!(
        shown.contains("- <script>window.__xss=5</script>"),
        "{shown}"
    );
    let shown = b
        .wait_text(
            &format!("#needs-list [data-id='{mcp}']"),
            "call create_issue on the MCP server github",
        )
        .await;
    assert!(shown.contains("\"title\": \"Flaky test\""), "{shown}");
    let multi = ask_permission(
        &c,
        &base,
        me,
        "MultiEdit",
        json!({"file_path": "src/lib.rs", "edits": [
            {"old_string": "mod a;", "new_string": "mod alpha;"},
            {"old_string": "use a::x;", "new_string": "use alpha::x;", "replace_all": true},
        ]}),
    )
    .await;
    let search = ask_permission(
        &c,
        &base,
        me,
        "WebSearch",
        json!({"query": "axum sse keep-alive", "allowed_domains": ["docs.rs"]}),
    )
    .await;
    let notebook = ask_permission(
        &c,
        &base,
        me,
        "NotebookEdit",
        json!({"notebook_path": "analysis/orders.ipynb", "cell_id": "c7", "edit_mode": "replace", "new_source": "df.groupby('day').sum()"}),
    )
    .await;
    let card = format!("#needs-list [data-id='{multi}']");
    let shown = b.wait_text(&card, "make 2 edits to a file").await;
    // (Labels are upper case on the page: innerText says so.)
    assert!(
        shown
            .to_lowercase()
            .contains("edit 2 of 2 · every occurrence"),
        "{shown}"
    );
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll(arguments[0] + ' .diff pre')].map(e => e.innerText);",
            json!([card])
        )
        .await,
        json!(["mod a;", "mod alpha;", "use a::x;", "use alpha::x;"])
    );
    let shown = b
        .wait_text(
            &format!("#needs-list [data-id='{search}']"),
            "axum sse keep-alive",
        )
        .await;
    assert!(shown.contains("docs.rs"), "{shown}");
    let shown = b
        .wait_text(
            &format!("#needs-list [data-id='{notebook}']"),
            "analysis/orders.ipynb",
        )
        .await;
    assert!(
        shown.contains("replace · cell c7") && shown.contains("df.groupby('day').sum()"),
        "{shown}"
    );
    // Codex's edits: one patch, the files it names, the patch itself.
    let patch = ask_permission(
        &c,
        &base,
        me,
        "apply_patch",
        json!({"command": "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-old()\n+new()\n*** Add File: src/b.rs\n+fn b() {}\n*** End Patch\n"}),
    )
    .await;
    let shown = b
        .wait_text(
            &format!("#needs-list [data-id='{patch}']"),
            "change files with a patch",
        )
        .await;
    assert!(
        shown.contains("src/a.rs, src/b.rs") && shown.contains("+new()"),
        "{shown}"
    );
    wait_title(b, "(7) cipc dashboard").await;

    // The session moved on (answered in its terminal): the prompt leaves at once.
    let r = c
        .delete(format!("{base}/questions/{fetch}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    b.wait_js(
        "a withdrawn prompt leaves Needs you",
        "return !document.querySelector(arguments[0]);",
        json!([format!("#needs-list [data-id='{fetch}']")]),
    )
    .await;
    b.wait_text(
        "#activity-list",
        "backend (api-server) moved on; its request to use WebFetch",
    )
    .await;
    wait_title(b, "(6) cipc dashboard").await;
    assert_eq!(
        b.js(
            "return window.__xss === undefined && document.querySelectorAll('#needs-you script, #needs-you img').length === 0;",
            json!([])
        )
        .await,
        json!(true)
    );

    // A reload: the decisions are in the feed from the broker's history.
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#conn-state", "live").await;
    b.click("#activity-filter [data-kind='permission']").await;
    let feed = b
        .wait_text(
            "#activity-list",
            "dashboard denied backend (api-server) Bash: rm -rf /",
        )
        .await;
    assert!(feed.contains("· note: Never on /"), "{feed}");
    assert!(
        feed.contains("dashboard allowed backend (api-server) Bash: ls -la /etc"),
        "{feed}"
    );
    b.click("#activity-filter [data-kind='all']").await;
    broker.stop().await;
}

/// Takes a lease in a session's name (`POST /leases` with its key); answers its id.
async fn lease(c: &reqwest::Client, base: &str, (peer, key): (&str, &str), body: Value) -> String {
    let r = c
        .post(format!("{base}/leases"))
        .header("x-cipc-peer", peer)
        .header("x-cipc-peer-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v["lease"]["id"].as_str().unwrap().to_string()
}

/// The leases panel: held leases live (paths, holder, reason, age, expiry),
/// gone when they expire or their holder leaves, and released by a person
/// after a confirmation.
async fn leases(b: &Browser) {
    // A quick sweeper, so a 1 s lease ends within tens of ms of its expiry.
    let broker = common::start_with(
        BrokerConfig {
            sweep_interval: Duration::from_millis(25),
            ..Default::default()
        },
        ServerConfig::default(),
        None,
    )
    .await;
    let base = broker.url();
    let c = authed(None);
    let repo = "github.com/acme/shop";
    let (backend, bkey) = connect_session(&c, &base, "backend", "api-server", "claude-code").await;
    let (frontend, fkey) = connect_session(&c, &base, "frontend", "web-ui", "codex").await;
    let api = lease(
        &c,
        &base,
        (&backend, &bkey),
        json!({"paths": ["src/api/", "Cargo.toml"], "repo": repo, "reason": "splitting the orders API <b>now</b>", "ttl": 1_800_000}),
    )
    .await;

    // On load: the held lease, from GET /leases.
    b.goto(&format!("{base}/dashboard")).await;
    b.wait_text("#conn-state", "live").await;
    let card = format!("#leases-list [data-id='{api}']");
    let shown = b.wait_text(&card, "src/api/").await;
    for want in [
        "Cargo.toml",
        "exclusive",
        "backend (api-server)",
        "Claude Code",
        repo,
        "splitting the orders API <b>now</b>",
        "taken just now",
    ] {
        assert!(shown.contains(want), "no {want:?} in {shown}");
    }
    assert!(
        shown.contains("expires in 29 min") || shown.contains("expires in 30 min"),
        "{shown}"
    );
    b.wait_text("#leases-count", "1 held").await;

    // Live: a shared lease of another session.
    let css = lease(
        &c,
        &base,
        (&frontend, &fkey),
        json!({"paths": ["web/**/*.css"], "repo": repo, "exclusive": false}),
    )
    .await;
    let css_card = format!("#leases-list [data-id='{css}']");
    let shown = b.wait_text(&css_card, "web/**/*.css").await;
    assert!(
        shown.contains("shared") && shown.contains("frontend (web-ui)") && shown.contains("Codex"),
        "{shown}"
    );
    b.wait_text("#leases-count", "2 held").await;

    // One that expires on its own (its card may come and go between two
    // looks, so what is checked is the feed and the panel after).
    let brief = lease(
        &c,
        &base,
        (&frontend, &fkey),
        json!({"paths": ["web/index.html"], "repo": repo, "ttl": 1000}),
    )
    .await;
    b.wait_text(
        "#activity-list",
        "frontend (web-ui)’s lease on web/index.html in github.com/acme/shop expired",
    )
    .await;
    b.wait_element_gone(&format!("#leases-list [data-id='{brief}']"))
        .await;
    b.wait_text(
        "#activity-list",
        "frontend (web-ui) shares web/**/*.css in github.com/acme/shop",
    )
    .await;
    b.wait_text(
        "#activity-list",
        "backend (api-server) leased src/api/, Cargo.toml in github.com/acme/shop",
    )
    .await;

    // A session's hook refused an edit because of a lease: the feed says
    // who, what, and whose lease was in the way.
    let r = c
        .post(format!("{base}/leases/refusals"))
        .header("X-Cipc-Peer-Key", &fkey)
        .json(
            &json!({"repo": repo, "paths": ["src/api/orders.rs"], "tool": "Edit", "leases": [api]}),
        )
        .send()
        .await
        .expect("report a refused edit");
    assert_eq!(r.status(), 202);
    b.wait_text(
        "#activity-list",
        "frontend (web-ui) was refused Edit of src/api/orders.rs: held by backend (api-server)",
    )
    .await;

    // Release asks first: Keep changes nothing, Yes releases.
    b.click(&format!("{card} .lease-release")).await;
    b.wait_text(&format!("{card} .lease-confirm"), "Release it?")
        .await;
    b.wait_js(
        "the keyboard moves to the confirmation",
        "return document.activeElement && document.activeElement.classList.contains('lease-yes');",
        json!([]),
    )
    .await;
    b.click(&format!("{card} .lease-keep")).await;
    b.wait_element_gone(&format!("{card} .lease-confirm")).await;
    let held_ids = || async {
        get_json(&c, format!("{base}/leases")).await["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(held_ids().await, [api.clone(), css.clone()], "Keep kept it");
    b.click(&format!("{card} .lease-release")).await;
    b.click(&format!("{card} .lease-yes")).await;
    b.wait_js(
        "the released lease leaves the panel",
        "return !document.querySelector(arguments[0]);",
        json!([card]),
    )
    .await;
    let v = get_json(&c, format!("{base}/leases/{api}")).await;
    assert_eq!(v["lease"]["status"], "released", "{v}");
    assert_eq!(
        held_ids().await,
        std::slice::from_ref(&css),
        "only that one was released"
    );
    b.wait_text(
        "#activity-list",
        "backend (api-server)’s lease on src/api/, Cargo.toml in github.com/acme/shop was released",
    )
    .await;
    b.wait_text("#leases-count", "1 held").await;

    // A holder that leaves takes its leases with it.
    let r = c
        .delete(format!("{base}/peers/{frontend}"))
        .header("x-cipc-peer-key", &fkey)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    b.wait_element_gone(&css_card).await;
    b.wait_text("#leases-list", "Nobody holds any paths").await;
    assert_eq!(
        b.js(
            "return window.__xss === undefined && document.querySelectorAll('#leases-list b, #leases-list img').length === 0;",
            json!([])
        )
        .await,
        json!(true),
        "markup in a reason was interpreted"
    );

    // The README's picture: sessions asking, and the paths they hold.
    let (web, wkey) = connect_session(&c, &base, "frontend", "web-ui", "codex").await;
    lease(
        &c,
        &base,
        (&backend, &bkey),
        json!({"paths": ["src/orders/", "migrations/0042_*.sql"], "repo": repo, "reason": "orders: totals in u64", "ttl": 2_700_000}),
    )
    .await;
    lease(
        &c,
        &base,
        (&web, &wkey),
        json!({"paths": ["web/src/Checkout.tsx"], "repo": repo, "reason": "new checkout flow", "ttl": 900_000}),
    )
    .await;
    let me = (backend.as_str(), bkey.as_str());
    ask_permission(
        &c,
        &base,
        me,
        "Bash",
        json!({"command": "cargo sqlx migrate run &&\n  cargo test -p orders -- --test-threads=1", "description": "Apply the new migration and run the orders tests"}),
    )
    .await;
    ask_permission(
        &c,
        &base,
        (&web, &wkey),
        "Edit",
        json!({"file_path": "web/src/Checkout.tsx", "old_string": "const total = items.length;", "new_string": "const total = items.reduce((s, i) => s + i.price, 0);"}),
    )
    .await;
    b.wait_text("#needs-summary", "2 permission requests").await;
    b.wait_text("#leases-count", "2 held").await;
    b.js(
        "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return true;",
        json!([]),
    )
    .await;
    b.window_size(1440, 1250).await;
    let shot = screenshot_path("dashboard-permissions.png");
    b.screenshot(&shot).await;
    publish_screenshot(&shot);
    b.color_scheme("dark").await;
    b.screenshot(&screenshot_path("dashboard-permissions-dark.png"))
        .await;
    b.color_scheme("light").await;
    b.window_size(420, 1400).await;
    b.screenshot(&screenshot_path("dashboard-permissions-narrow.png"))
        .await;
    b.window_size(1440, 1000).await;
    broker.stop().await;
}
