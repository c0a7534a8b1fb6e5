//! The yardstick of scripts/bench: a bare axum hello-world, measured in the same
//! run as the services so that their budgets are multiples of it.

use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        Router::new().route("/", get(|| async { "Hello, World!" })),
    )
    .await
}
