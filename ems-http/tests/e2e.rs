//! The real binary on a free port, driven over HTTP: the demo data, a purchase,
//! check-in at the door, and a graceful stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ems-http"))
        .args(["--bind", "127.0.0.1:0"])
        .env("EMS_LOG_JSON", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("readable stdout");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("the URL is printed: {first}"))
        .to_owned();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> String {
    let r: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({ "email": email, "password": ems_http::demo::PASSWORD }))
        .send()
        .await
        .expect("login answers")
        .json()
        .await
        .expect("json");
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {r}"))
        .to_owned()
}

#[tokio::test]
async fn the_binary_serves_a_whole_story() {
    let server = start();
    let base = server.base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    let ready = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("ready answers");
    assert_eq!(ready.status(), 200);

    let events: Value = http
        .get(format!("{base}/events?category=music"))
        .send()
        .await
        .expect("events")
        .json()
        .await
        .expect("json");
    let jazz = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["title"] == "Jazz by the River")
        .expect("the demo event is listed")
        .clone();
    let event_id = jazz["id"].as_str().expect("id");
    let tiers: Value = http
        .get(format!("{base}/events/{event_id}/tiers"))
        .send()
        .await
        .expect("tiers")
        .json()
        .await
        .expect("json");
    let tier = tiers
        .as_array()
        .expect("tiers")
        .iter()
        .find(|t| t["name"] == "Standard")
        .expect("a standard tier")["id"]
        .clone();

    let customer = login(&http, &base, "customer@ems.test").await;
    let quote: Value = http
        .post(format!("{base}/events/{event_id}/quote"))
        .json(&json!({ "items": [{ "tier_id": tier, "quantity": 2 }], "coupon": "RIVER10" }))
        .send()
        .await
        .expect("quote")
        .json()
        .await
        .expect("json");
    assert_eq!(quote["total"]["currency"], "EUR", "{quote}");

    let checkout = http
        .post(format!("{base}/checkout"))
        .bearer_auth(&customer)
        .header("idempotency-key", "e2e-order-1")
        .json(&json!({ "event_id": event_id, "items": [{ "tier_id": tier, "quantity": 2 }], "coupon": "RIVER10" }))
        .send()
        .await
        .expect("checkout");
    assert_eq!(checkout.status(), 201);
    let checkout: Value = checkout.json().await.expect("json");
    assert_eq!(checkout["booking"]["status"], "confirmed", "{checkout}");
    assert_eq!(
        checkout["booking"]["total"], quote["total"],
        "charged what was quoted"
    );
    let code = checkout["tickets"][0]["code"].as_str().expect("code");

    let organizer = login(&http, &base, "organizer@ems.test").await;
    let scan: Value = http
        .post(format!("{base}/events/{event_id}/check-in"))
        .bearer_auth(&organizer)
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("check-in")
        .json()
        .await
        .expect("json");
    assert!(scan.to_string().contains("admitted"), "{scan}");

    // SIGTERM: the server stops accepting and exits cleanly.
    let mut server = server;
    #[cfg(unix)]
    {
        let pid = server.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let mut exited = None;
        for _ in 0..100 {
            if let Some(s) = server.child.try_wait().expect("wait") {
                exited = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = exited.expect("the server exits after SIGTERM");
        assert!(status.success(), "clean exit: {status}");
    }
}

/// Sends `head`, then (after a pause, so it arrives on its own) `body`, and
/// reads one response with a `Content-Length` body; returns its status line.
fn exchange(stream: &mut std::net::TcpStream, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    stream.write_all(head.as_bytes()).expect("write head");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));
    if !body.is_empty() {
        stream.write_all(body).expect("write body");
    }
    let mut buf = Vec::new();
    let mut byte = [0_u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "the connection closed before a response: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).expect("ascii head");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("a length"))
        })
        .unwrap_or(0);
    let mut rest = vec![0_u8; length];
    stream.read_exact(&mut rest).expect("read body");
    head.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_rejected_request_leaves_its_connection_usable() {
    let server = start();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Refused before any handler would read the body (no credentials), with
    // the body arriving after the headers.
    let body = br#"{"title":"late body"}"#;
    let status = exchange(
        &mut stream,
        &format!(
            "POST /events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ),
        body,
    );
    assert!(status.contains(" 401 "), "{status}");
    // The same connection serves the next request.
    let status = exchange(
        &mut stream,
        &format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n"),
        b"",
    );
    assert!(status.contains(" 200 "), "{status}");
}
