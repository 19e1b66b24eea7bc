//! A small W3C WebDriver client over reqwest, driving Debian's headless
//! `chromium` through `chromedriver` (packages `chromium`, `chromium-driver`,
//! which scripts/test.sh installs). No browser is downloaded.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{DEADLINE, wait_for};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver; killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (Debian package chromium-driver; scripts/test.sh installs it)",
            );
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        wait_for("chromedriver to be ready", || async {
            let status = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()?;
            let body: Value = status.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|ready| *ready)
        })
        .await;
        driver
    }

    /// Opens a headless browser with its own profile (so two are two users).
    pub async fn browser(&self, profile: &Path) -> Browser {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1100,720", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": { "intl.accept_languages": "en-US,en" },
            },
        }}});
        let reply = self.post(&format!("{}/session", self.url), &caps).await;
        let id = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {reply}"))
            .to_string();
        Browser {
            base: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }

    async fn post(&self, url: &str, body: &Value) -> Value {
        post(&self.http, url, body).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.unwrap();
    let value: Value = response.json().await.unwrap();
    value["value"].clone()
}

/// One browser session.
pub struct Browser {
    base: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        post(
            &self.http,
            &format!("{}/url", self.base),
            &json!({ "url": url }),
        )
        .await;
    }

    /// Runs a script in the page and returns its value; a script that
    /// throws gives null (so that a wait goes on: the element may not be
    /// there yet), and one that does not parse fails the test.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        let value = post(
            &self.http,
            &format!("{}/execute/sync", self.base),
            &json!({ "script": script, "args": args }),
        )
        .await;
        match value.get("error").and_then(Value::as_str) {
            Some(_) => {
                let message = value["message"].as_str().unwrap_or_default();
                assert!(
                    !message.contains("SyntaxError"),
                    "a test script does not parse: {message}\n{script}"
                );
                Value::Null
            }
            None => value,
        }
    }

    /// Waits for an element matching `css`, and returns its id.
    pub async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found = post(
                &self.http,
                &format!("{}/element", self.base),
                &json!({ "using": "css selector", "value": css }),
            )
            .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_string();
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self
                    .eval(
                        "return location.href + '\\n' + document.documentElement.outerHTML",
                        json!([]),
                    )
                    .await;
                panic!("timed out waiting for element {css} ({found}); the page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{id}/click", self.base),
            &json!({}),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        post(
            &self.http,
            &format!("{}/element/{id}/value", self.base),
            &json!({ "text": text }),
        )
        .await;
    }

    /// Waits until `script` (a function body returning a truthy value when
    /// the page is as wanted) holds; returns its value.
    pub async fn wait_until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let value = self.eval(script, json!([])).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let body = self.eval("return document.body.innerText", json!([])).await;
                panic!("timed out waiting for {what}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG screenshot of the window.
    pub async fn screenshot(&self, path: &Path) {
        let response = self
            .http
            .get(format!("{}/screenshot", self.base))
            .send()
            .await
            .unwrap();
        let value: Value = response.json().await.unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(value["value"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
