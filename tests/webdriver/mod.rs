//! A very small WebDriver client (plain JSON over HTTP with reqwest) that
//! drives Debian's `chromedriver` + headless `chromium`, for the dashboard's
//! end-to-end test. Only what the test needs: navigate, find, click, type,
//! run a script, take a screenshot, read the browser log.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's Tab key, for [`Browser::press`].
pub const TAB: &str = "\u{E004}";
/// WebDriver's Enter key, for [`Browser::press`].
pub const ENTER: &str = "\u{E007}";

/// How long UI waits may take before the test fails.
pub const UI_WAIT: Duration = Duration::from_secs(10);

/// Where the browser and its driver are.
pub struct BrowserPaths {
    /// The chromium binary.
    pub chromium: PathBuf,
    /// The chromedriver binary.
    pub chromedriver: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds chromium and chromedriver (`CIPC_CHROMIUM` / `CIPC_CHROMEDRIVER`
/// override). When missing: under CI (`CI=true` or `CI=1`) this panics with what to
/// install; otherwise it prints a skip notice and answers `None`.
pub fn browser_or_skip(test: &str) -> Option<BrowserPaths> {
    let pick = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(var) {
            let p = PathBuf::from(p);
            return p.is_file().then_some(p);
        }
        names.iter().find_map(|n| which(n))
    };
    let chromium = pick(
        "CIPC_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = pick("CIPC_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(BrowserPaths {
            chromium,
            chromedriver,
        }),
        _ => {
            crate::common::skip(
                test,
                "needs chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver; or set CIPC_CHROMIUM and CIPC_CHROMEDRIVER)",
            );
            None
        }
    }
}

/// A running chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    port: u16,
    session_id: String,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
}

/// A WebDriver error answer or a transport failure.
#[derive(Debug)]
pub struct WdError(pub String);

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session with a
    /// fresh profile and the given window size.
    pub async fn start(paths: &BrowserPaths, width: u32, height: u32) -> Browser {
        let port = crate::common::free_port();
        let driver = Command::new(&paths.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", paths.chromedriver.display()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        break;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready on port {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--no-proxy-server".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": paths.chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("create session")
            .json()
            .await
            .expect("session answer");
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {r}"))
            .to_string();
        Browser {
            driver,
            port,
            session_id: id.clone(),
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .map_err(|e| WdError(format!("webdriver {path}: {e}")))?;
        let ok = r.status().is_success();
        let v: Value = r
            .json()
            .await
            .map_err(|e| WdError(format!("webdriver {path}: bad answer: {e}")))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(WdError(format!(
                "webdriver {path}: {} ({})",
                v["value"]["error"].as_str().unwrap_or("error"),
                v["value"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            )))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, WdError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, WdError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}))
            .await
            .expect("navigate");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.try_js(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Like [`Browser::js`], but returns the error instead of panicking.
    pub async fn try_js(&self, script: &str, args: Value) -> Result<Value, WdError> {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Finds the first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<String, WdError> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| WdError(format!("no element id in {v}")))
    }

    /// Waits until `css` matches a displayed element, then clicks it (a real
    /// pointer click, as a person would).
    /// A live list may be re-rendered between finding the element and
    /// clicking it; then the click is retried on the new element.
    pub async fn click(&self, css: &str) {
        for attempt in 0.. {
            let el = self.wait_element(css).await;
            match self.post(&format!("/element/{el}/click"), json!({})).await {
                Ok(_) => return,
                Err(e) if attempt < 20 && e.to_string().contains("stale element") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Clears a form field and types `text` into it with real key events.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_element(css).await;
        self.post(&format!("/element/{el}/clear"), json!({}))
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        self.post(&format!("/element/{el}/value"), json!({"text": text}))
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Presses `keys` on whatever has the focus, as a person at the keyboard
    /// would (W3C actions: a key down and up per character; WebDriver's
    /// special keys such as [`TAB`] and [`ENTER`] are characters too).
    pub async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                let k = k.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await
        .unwrap_or_else(|e| panic!("press {keys:?}: {e}"));
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_element_gone(&self, css: &str) {
        self.wait_js(
            &format!("{css} goes away"),
            "return !document.querySelector(arguments[0]);",
            json!([css]),
        )
        .await;
    }

    async fn wait_element(&self, css: &str) -> String {
        let last = std::cell::RefCell::new(String::new());
        let found = eventually(UI_WAIT, || async {
            match self.find(css).await {
                Ok(el) => {
                    let shown = self
                        .get(&format!("/element/{el}/displayed"))
                        .await
                        .is_ok_and(|v| v == json!(true));
                    if shown {
                        Some(el)
                    } else {
                        None
                    }
                }
                Err(e) => {
                    *last.borrow_mut() = e.0;
                    None
                }
            }
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no visible element {css} within {UI_WAIT:?} ({})",
                last.borrow()
            )
        })
    }

    /// The visible text of the first element matching `css` ("" when none).
    pub async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Polls until the text of `css` contains `needle`; panics with the page's
    /// text if it does not within [`UI_WAIT`].
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let got = eventually(UI_WAIT, || async {
            let t = self.text(css).await;
            t.contains(needle).then_some(t)
        })
        .await;
        match got {
            Some(t) => t,
            None => panic!(
                "{css} did not show {needle:?} within {UI_WAIT:?}; it shows {:?}\n--- page text ---\n{}\n--- console ---\n{:#?}",
                self.text(css).await,
                self.text("body").await,
                self.console().await
            ),
        }
    }

    /// Polls a script until it returns something truthy; panics with `what` if it never does.
    pub async fn wait_js(&self, what: &str, script: &str, args: Value) -> Value {
        let got = eventually(UI_WAIT, || async {
            let v = self.js(script, args.clone()).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            truthy.then_some(v)
        })
        .await;
        match got {
            Some(v) => v,
            None => panic!(
                "{what}: not true within {UI_WAIT:?}\n--- page text ---\n{}\n--- console ---\n{:#?}",
                self.text("body").await,
                self.console().await
            ),
        }
    }

    /// The text of an open alert/confirm/prompt, if one is open.
    pub async fn alert_text(&self) -> Option<String> {
        self.get("/alert/text")
            .await
            .ok()
            .map(|v| v.as_str().unwrap_or_default().to_string())
    }

    /// Browser console entries since the last call (level, message), when the
    /// driver supports reading them.
    pub async fn console(&self) -> Option<Vec<(String, String)>> {
        let v = self
            .post("/se/log", json!({"type": "browser"}))
            .await
            .ok()?;
        Some(
            v.as_array()?
                .iter()
                .map(|e| {
                    (
                        e["level"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        )
    }

    /// Switches `prefers-color-scheme` (through the DevTools protocol).
    pub async fn color_scheme(&self, scheme: &str) {
        let _ = self
            .post(
                "/goog/cdp/execute",
                json!({"cmd": "Emulation.setEmulatedMedia",
                       "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}}),
            )
            .await;
    }

    /// Grants the page a permission (e.g. `notifications`) as if the person
    /// had allowed it, through WebDriver's Set Permission or, failing that,
    /// the DevTools protocol. False when the browser supports neither.
    pub async fn grant(&self, permission: &str) -> bool {
        let w3c = self
            .post(
                "/permissions",
                json!({"descriptor": {"name": permission}, "state": "granted"}),
            )
            .await;
        if w3c.is_ok() {
            return true;
        }
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Browser.grantPermissions", "params": {"permissions": [permission]}}),
        )
        .await
        .is_ok()
    }

    /// Resizes the browser window.
    pub async fn window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await
            .expect("resize window");
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.get("/screenshot").await.expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (closing chromium) and stops chromedriver.
    pub fn quit(self) {
        drop(self);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session first (closing chromium), even when a panic got us
        // here: a plain blocking HTTP request, since Drop cannot await.
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session_id, self.port
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Polls `f` every 50 ms until it answers `Some`, or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
