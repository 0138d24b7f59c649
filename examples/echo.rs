//! The demo echo upstream on its own, for running the real binary against the quickstart
//! configuration: `cargo run --example echo` and `portcullis serve --config
//! config/quickstart.toml`. Address from the first argument, default 127.0.0.1:8081.

#[path = "support/echo.rs"]
mod echo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let echo = echo::Echo::start(addr.parse()?).await?;
    println!("echo upstream on http://{}", echo.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
