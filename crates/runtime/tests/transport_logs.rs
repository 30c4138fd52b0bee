//! The transport's warnings name the peer address and the reason. In a test
//! binary of its own: `tracing` caches per-callsite interest, and other tests
//! hitting the same callsites on other threads without a subscriber could race
//! with this test's thread-local one.

mod net;

use std::sync::{Arc, Mutex};

use net::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Collects `tracing` output in a buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

// Current-thread runtime: every task runs on this thread, under the
// thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn protocol_errors_are_logged_with_the_peer_address_and_reason() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (b, _b_rx) = node(2, opts()).await;
    let mut s = handshaken(b.local_addr(), 5, 2).await;
    let peer_addr = s.local_addr().expect("local addr").to_string();
    let mut bad = frame(&payload(&[heartbeat(1, 5, 2, 1)]));
    bad[4] ^= 1;
    s.write_all(&bad).await.expect("write");
    assert_closed(&mut s).await;
    wait_until("the warning", || logs.text().contains("checksum")).await;
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains(&peer_addr), "{text}");
    assert!(text.contains("closing raft connection"), "{text}");

    let mut s = TcpStream::connect(b.local_addr()).await.expect("connect");
    let stranger = s.local_addr().expect("local addr").to_string();
    s.write_all(&hello(b"RhTp", 12345, 5, 2))
        .await
        .expect("write");
    assert_closed(&mut s).await;
    wait_until("the refusal", || logs.text().contains("wrong cluster id")).await;
    assert!(logs.text().contains(&stranger), "{}", logs.text());
    b.shutdown().await;
}
