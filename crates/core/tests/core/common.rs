//! What the raw-socket tests share.

use std::time::Duration;

use tokio::{io::AsyncReadExt, net::TcpStream};

/// Reads until the server closes the connection (bounded: 20 s), returning
/// what it sent.
pub async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}
