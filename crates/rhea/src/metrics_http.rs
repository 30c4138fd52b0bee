//! The Prometheus endpoint: the `metrics` facade's recorder renders the text
//! format; a minimal HTTP/1.1 responder serves it on `GET /metrics` (any
//! other path is 404). Requests are bounded (`MAX_REQUEST_BYTES`, a read
//! timeout) so a slow or hostile scraper cannot hold memory or a task.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

const MAX_REQUEST_BYTES: usize = 8 * 1024;
const READ_TIMEOUT_MS: u64 = 5_000;

/// Install the global recorder (once per process) and return its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus metrics recorder")
}

/// Bind `addr` and serve `/metrics` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (port in use?)"))?;
    tracing::info!(%addr, "serving Prometheus metrics on /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let (mut sock, _) = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                let read = async {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST_BYTES
                    {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    true
                };
                let complete = tokio::time::timeout(Duration::from_millis(READ_TIMEOUT_MS), read)
                    .await
                    .unwrap_or(false);
                if !complete {
                    return;
                }
                let line = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
                let ok = line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?");
                let (status, body) = if ok {
                    ("200 OK", handle.render())
                } else {
                    ("404 Not Found", "not found; try /metrics\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    }))
}
