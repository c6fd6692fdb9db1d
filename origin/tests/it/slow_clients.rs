//! Slow and idle clients against a real origin (Kafka and Redis): a client
//! that never finishes its headers or its body is cut off at the configured
//! deadline, and connections past the cap wait until one closes.

use std::time::{Duration, Instant};

use crate::common::{start, Backend, TestOrigin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE_MS: u64 = 400;

async fn origin(max_connections: usize) -> TestOrigin {
    start(Backend::KafkaRedis, |a| {
        a.header_timeout_ms = DEADLINE_MS;
        a.body_timeout_ms = DEADLINE_MS;
        a.max_connections = max_connections;
    })
    .await
}

async fn connect(origin: &TestOrigin) -> TcpStream {
    TcpStream::connect(origin.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes; what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after {within:?}");
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let origin = origin(100).await;
    // Silent from the start.
    let mut silent = connect(&origin).await;
    // Half a request line, a byte at a time, then nothing.
    let mut dribbling = connect(&origin).await;
    for b in b"GET /healthz HT" {
        dribbling.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for stream in [&mut silent, &mut dribbling] {
        let (_, after) = until_closed(stream, Duration::from_secs(5)).await;
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }
    // A client that is not slow is served as before.
    let r = origin
        .http
        .get(origin.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_an_error_not_a_hang() {
    let origin = origin(100).await;
    let mut stream = connect(&origin).await;
    stream
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"site_key\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("an answer within the body deadline")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 4"), "{reply}");
    assert!(reply.contains("\"error\""), "a JSON error: {reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    let origin = origin(2).await;
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..2 {
        idle.push(connect(&origin).await);
    }
    // Both slots are held by silent clients: a third request waits until the
    // header deadline frees one, and is then served.
    // A fresh client: a pooled keep-alive connection would hold a slot already.
    let fresh = reqwest::Client::new();
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        fresh.get(origin.url("/healthz")).send(),
    )
    .await
    .expect("served once the header deadline freed a slot")
    .unwrap();
    assert_eq!(r.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(DEADLINE_MS / 2),
        "served at once ({waited:?}): the cap did not hold"
    );
    for stream in &mut idle {
        until_closed(stream, Duration::from_secs(5)).await;
    }
}
