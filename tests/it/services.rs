//! The real PostgreSQL and Redis the production-tier tests use, and a TCP cutter to take them
//! away mid-test. Each test gets its own PostgreSQL database (dropped afterwards) and its own
//! Redis key prefix, so tests run in parallel. Addresses come from
//! PORTCULLIS_TEST_DATABASE_URL and PORTCULLIS_TEST_REDIS_URL, defaulting to the local
//! servers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::Connection as _;
use tokio::net::{TcpListener, TcpStream};

pub fn pg_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", portcullis::secret::random_hex(6))
}

/// A database of its own, dropped when the value is.
pub struct PgDb {
    pub url: String,
    name: String,
}

fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

impl PgDb {
    pub async fn create() -> PgDb {
        let name = unique("pctest_");
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        PgDb {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// The same database reached through another address (a cutter).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = pg_admin_url();
        // Drop runs outside async; use a private runtime on a plain thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

const OPEN: u8 = 0;
const REFUSE: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A TCP forwarder that can drop every connection (`cut`), swallow traffic without answering
/// (`blackhole`), and come back (`restore`): a dependency failing, on demand.
#[derive(Clone)]
pub struct Cutter {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Cutter {
    pub async fn start(target: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutter = Cutter {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(OPEN)),
            live: Arc::default(),
        };
        let c = cutter.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                match c.mode.load(Ordering::SeqCst) {
                    REFUSE => drop(client),
                    BLACKHOLE => {
                        let task = tokio::spawn(async move {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                            drop(client);
                        });
                        c.live.lock().unwrap().push(task.abort_handle());
                    }
                    _ => {
                        let task = tokio::spawn(async move {
                            if let Ok(mut upstream) = TcpStream::connect(target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        });
                        c.live.lock().unwrap().push(task.abort_handle());
                    }
                }
            }
        });
        cutter
    }

    fn kill_live(&self) {
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.store(REFUSE, Ordering::SeqCst);
        self.kill_live();
    }

    /// Closes every connection; new ones are accepted and never answered.
    pub fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
        self.kill_live();
    }

    pub fn restore(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }
}

fn resolve(host_port: &str) -> SocketAddr {
    use std::net::ToSocketAddrs as _;
    host_port.to_socket_addrs().unwrap().next().unwrap()
}

pub fn pg_addr() -> SocketAddr {
    let url = pg_admin_url();
    resolve(url.split('@').nth(1).unwrap().split('/').next().unwrap())
}

pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    resolve(
        url.trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap(),
    )
}

/// Configuration for an instance on PostgreSQL (and Redis, when `redis` is given) with a
/// shared signing key, so several instances form one deployment.
pub fn production_toml(
    database_url: &str,
    redis: Option<(&str, &str)>,
    key_path: &std::path::Path,
) -> String {
    let mut text = format!(
        "[store]\ndatabase_url = \"{database_url}\"\nacquire_timeout = \"500ms\"\nstatement_timeout = \"500ms\"\n"
    );
    if let Some((url, prefix)) = redis {
        text.push_str(&format!(
            "redis_url = \"{url}\"\nredis_key_prefix = \"{prefix}\"\nredis_timeout = \"50ms\"\n"
        ));
    }
    text.push_str(&format!(
        "[tokens]\nsigning_key_path = \"{}\"\n",
        key_path.display()
    ));
    text
}

/// A fresh EdDSA signing key in `dir`.
pub fn shared_key(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("shared-signing.pem");
    let pem = portcullis::auth::signing_keys::generate_pem(jsonwebtoken::Algorithm::EdDSA).unwrap();
    std::fs::write(&path, pem).unwrap();
    path
}
