//! A headless Chromium driven through ChromeDriver's WebDriver protocol (JSON over HTTP), and
//! the one-request HTTP client both the protocol and the dashboard's API calls use.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// One HTTP/1.1 request on a fresh connection: `(status, body)`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to 127.0.0.1");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    // Read by the announced length (a server may keep the connection open regardless).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (head, body_at) = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "{method} {path}: the connection closed before the headers"
        );
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase(),
                at + 4,
            );
        }
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - body_at;
        let complete = match length {
            Some(len) => have >= len,
            None if chunked => raw.ends_with(b"\r\n0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[body_at..]).into_owned();
    (status, if chunked { unchunk(&rest) } else { rest })
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// A `chromedriver` process on a free port, killed when dropped.
pub struct ChromeDriver {
    port: u16,
    child: Child,
}

impl ChromeDriver {
    /// Starts ChromeDriver and waits until it is ready. Panics with what to install when it is
    /// missing (CI installs Debian's `chromium` and `chromium-driver`).
    pub fn start() -> Self {
        let port = switchyard_testkit::redis_server::free_port().unwrap();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): the browser test needs Chromium and \
                     ChromeDriver (Debian: apt-get install chromium chromium-driver)"
                )
            });
        let driver = ChromeDriver { port, child };
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let (status, body) = http(port, "GET", "/status", None, &[]);
                if status == 200 && body.contains("\"ready\":true") {
                    return driver;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new headless Chromium window of `width` x `height`.
    pub fn session(&self, width: u32, height: u32) -> Session {
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            },
        }}});
        let reply = self.call("POST", "/session", Some(caps));
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        Session {
            port: self.port,
            id,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(self.port, method, path, body)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let text = body.map(|b| b.to_string());
    let (status, answer) = http(port, method, path, text.as_deref(), &[]);
    let value: Value = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {status} {answer:?}: {e}"));
    assert!(
        status == 200,
        "WebDriver {method} {path} answered {status}: {value}"
    );
    value
}

/// One browser window.
pub struct Session {
    port: u16,
    id: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )["value"]
            .clone()
    }

    /// Clicks the first element matching `css` as a user would (WebDriver element click).
    pub fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        let element = found["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned();
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let shot = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().expect("a base64 screenshot"))
            .expect("valid base64")
    }

    /// Polls `script` every 50 ms until it returns something other than `null`/`false`.
    pub fn wait_for(&self, within: Duration, what: &str, script: &str, args: Value) -> Value {
        let started = Instant::now();
        loop {
            let v = self.run(script, args.clone());
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if started.elapsed() >= within {
                // What the page says instead (its banners, form and pager) tells why.
                let shown = self.run(
                    "const t = id => { const e = document.getElementById(id);
                       return e ? (e.hidden ? '(hidden) ' : '') + e.textContent.slice(0, 300) : '(none)'; };
                     const v = id => { const e = document.getElementById(id); return e ? e.value : '(none)'; };
                     return {message: t('message'), error: t('error'), warnings: t('warnings'),
                       queue: v('b-queue'), state: v('b-state'), info: t('b-info')};",
                    json!([]),
                );
                panic!("timed out waiting for the page to show {what}; the page shows {shown}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
            &[],
        );
    }
}
