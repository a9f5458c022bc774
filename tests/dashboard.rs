//! The web dashboard, end to end: its HTTP surface (content types, CSP, the
//! token login) over plain HTTP, and the page itself in real headless
//! Chromium driven through chromedriver.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`. Without
//! them it prints a skip notice, except under CI (`CI` set), where it fails.
//! `CIPC_SCREENSHOT=1` also copies the screenshot it takes to
//! `docs/dashboard.png` (it always writes one under the target dir).

mod common;
mod webdriver;

use serde_json::{json, Value};
use std::path::PathBuf;
use webdriver::{browser_or_skip, Browser};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(paths) = browser_or_skip("dashboard_in_headless_chromium") else {
        return;
    };
    let browser = Browser::start(&paths, 1440, 1000).await;
    live_view_and_command_center(&browser).await;
    token_login(&browser).await;
    if let Some(log) = browser.console().await {
        let bad: Vec<_> = log
            .iter()
            .filter(|(level, msg)| {
                level == "SEVERE"
                    // Expected: the 401 of a wrong login, and streams cut when a broker stops.
                    && !msg.contains("/dashboard/login")
                    && !msg.contains("/events")
            })
            .collect();
        assert!(bad.is_empty(), "browser console errors: {bad:#?}");
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
    b.color_scheme("dark").await;
    b.screenshot(&screenshot_path("dashboard-dark.png")).await;
    b.color_scheme("light").await;
    // The responsive layouts, for a person to look at (not checked in).
    b.window_size(1024, 1200).await;
    b.screenshot(&screenshot_path("dashboard-medium.png")).await;
    b.window_size(420, 1200).await;
    b.screenshot(&screenshot_path("dashboard-narrow.png")).await;
    b.window_size(1440, 1000).await;
    if std::env::var_os("CIPC_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&shot, &docs).unwrap();
        eprintln!("screenshot saved to {}", docs.display());
    }
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
