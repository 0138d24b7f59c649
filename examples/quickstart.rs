//! One command to see Portcullis work: starts the demo echo upstream on 127.0.0.1:8081 and
//! Portcullis on 127.0.0.1:8080 with `config/quickstart.toml` (SQLite and keys under
//! ./quickstart-data). Stop with Ctrl-C.
//!
//!     cargo run --release --example quickstart

use portcullis::{App, Config};

#[path = "support/echo.rs"]
mod echo;

use echo::Echo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load_file("config/quickstart.toml".as_ref(), std::env::vars())?;
    portcullis::logging::init_logging(&config.log);
    let echo = Echo::start("127.0.0.1:8081".parse()?).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    let admin = match config.server.admin_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
        None => None,
    };
    let listen = config.server.listen;
    let app = App::build(config).await?;
    println!("echo upstream on http://{}", echo.addr);
    println!("portcullis on   http://{listen}  (account API under /api/v1/auth)");
    println!("try: curl -s http://{listen}/public/hello");
    app.run(listener, admin, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
