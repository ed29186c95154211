//! The demo service: what the README's first command runs. Every pattern of `kvkit` in one small
//! axum service, on the memory store by default and on Redis with one setting.
//!
//! - `GET /products/{id}`: a product from a SQLite database (created and seeded on first start),
//!   read through the cache (fresh for 300 s, served stale for 60 s more while one background
//!   refresh runs; unknown ids are remembered for 30 s), with `X-Cache: HIT|MISS|STALE`.
//! - `POST /login` with `{"email": …}`: creates a session for a known user and sets the cookie.
//! - `GET /me`: the session's user. `POST /logout`: destroys the session and clears the cookie.
//! - Every route: 100 requests a minute per client, with the rate-limit headers.
//!
//! Errors are JSON: `{"error": "…"}` with a 4xx status for bad input.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = kvkit::open("memory:").await?;
//! let config = kv_demo::Config::new(store, "products.sqlite3");
//! let router = kv_demo::router(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! kv_demo::serve(listener, router, std::future::pending()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kvkit::http::{CurrentSession, RateLimitLayer, SessionCookie, SessionLayer, json_error};
use kvkit::patterns::{Cache, CacheOptions, RateLimiter, Session, SessionManager};
use kvkit::{Clock, KvStore, SystemClock};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

type Store = Arc<dyn KvStore>;

/// What the service runs on.
///
/// ```
/// let config = kv_demo::Config::new(std::sync::Arc::new(kvkit::memory::MemoryStore::new()), "demo.sqlite3");
/// assert_eq!(config.rate_limit, Some(100));
/// ```
#[derive(Clone)]
pub struct Config {
    /// The key-value store behind the cache, the sessions and the rate limit.
    pub store: Store,
    /// The SQLite database of products and users (created and seeded when missing).
    pub database: PathBuf,
    /// The clock the patterns read (the system clock; tests move a manual one).
    pub clock: Arc<dyn Clock>,
    /// Requests a minute per client; `None` serves without the rate-limit layer.
    pub rate_limit: Option<u64>,
    /// Whether the session cookie is `Secure` (on by default; browsers and curl send it to
    /// `127.0.0.1` over plain HTTP too).
    pub secure_cookie: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("store", &self.store.capabilities().backend)
            .field("database", &self.database)
            .field("rate_limit", &self.rate_limit)
            .field("secure_cookie", &self.secure_cookie)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults over `store` and the database at `database`.
    ///
    /// ```
    /// let config = kv_demo::Config::new(std::sync::Arc::new(kvkit::memory::MemoryStore::new()), "demo.sqlite3");
    /// assert!(config.secure_cookie);
    /// ```
    pub fn new(store: Store, database: impl Into<PathBuf>) -> Self {
        Self {
            store,
            database: database.into(),
            clock: Arc::new(SystemClock),
            rate_limit: Some(100),
            secure_cookie: true,
        }
    }
}

/// Why the service could not start.
///
/// ```
/// let err = kv_demo::DemoError::Database("disk full".into());
/// assert_eq!(err.to_string(), "database: disk full");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DemoError {
    /// The SQLite database could not be opened or seeded.
    Database(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(message) => write!(f, "database: {message}"),
        }
    }
}

impl std::error::Error for DemoError {}

/// A product, as the endpoint returns it under `data`.
///
/// ```
/// let p = kv_demo::Product { id: 1, name: "Kettle".into(), price_cents: 2599 };
/// assert_eq!(serde_json::to_value(&p).unwrap()["price_cents"], 2599);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its price in cents.
    pub price_cents: u64,
}

/// The products and users, in SQLite.
#[derive(Clone)]
struct Catalog {
    connection: Arc<Mutex<Connection>>,
}

const SEED_PRODUCTS: [(&str, u64); 10] = [
    ("Kettle", 2599),
    ("Teapot", 3450),
    ("Mug", 899),
    ("Grinder", 7900),
    ("Scale", 2999),
    ("Filter papers", 499),
    ("Dripper", 1999),
    ("Tin", 1250),
    ("Spoon", 350),
    ("Tray", 1599),
];

const SEED_USERS: [(&str, &str, &str); 2] = [
    ("u-ada", "ada@example.com", "admin"),
    ("u-grace", "grace@example.com", "user"),
];

impl Catalog {
    fn open(path: &Path) -> Result<Self, DemoError> {
        let db = |e: rusqlite::Error| DemoError::Database(format!("{}: {e}", path.display()));
        let connection = Connection::open(path).map_err(db)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, role TEXT NOT NULL);",
            )
            .map_err(db)?;
        let empty: bool = connection
            .query_row("SELECT COUNT(*) = 0 FROM products", [], |row| row.get(0))
            .map_err(db)?;
        if empty {
            for (name, price) in SEED_PRODUCTS {
                connection
                    .execute(
                        "INSERT INTO products (name, price_cents) VALUES (?1, ?2)",
                        (name, price),
                    )
                    .map_err(db)?;
            }
            for (id, email, role) in SEED_USERS {
                connection
                    .execute(
                        "INSERT OR IGNORE INTO users (id, email, role) VALUES (?1, ?2, ?3)",
                        (id, email, role),
                    )
                    .map_err(db)?;
            }
            tracing::info!(path = %path.display(), "created and seeded the demo database");
        }
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&connection).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn product(&self, id: u64) -> Result<Option<Product>, String> {
        self.query(move |c| {
            c.query_row(
                "SELECT id, name, price_cents FROM products WHERE id = ?1",
                [id],
                |row| {
                    Ok(Product {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        price_cents: row.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn user(&self, email: String) -> Result<Option<(String, String, String)>, String> {
        self.query(move |c| {
            c.query_row(
                "SELECT id, email, role FROM users WHERE email = ?1",
                [email],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
        })
        .await
    }
}

/// A clock shared by the patterns.
#[derive(Debug, Clone)]
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> SystemTime {
        self.0.now()
    }
}

#[derive(Clone)]
struct AppState {
    cache: Cache<Store>,
    sessions: Arc<SessionManager<Store>>,
    cookie: SessionCookie,
    catalog: Catalog,
}

/// The service's routes and layers, ready for [`serve`].
///
/// ```no_run
/// let config = kv_demo::Config::new(std::sync::Arc::new(kvkit::memory::MemoryStore::new()), "demo.sqlite3");
/// let router = kv_demo::router(config).expect("database");
/// let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
/// # drop(service);
/// ```
pub fn router(config: Config) -> Result<Router, DemoError> {
    let catalog = Catalog::open(&config.database)?;
    let clock = SharedClock(Arc::clone(&config.clock));
    let cache = Cache::builder(Arc::clone(&config.store))
        .clock(clock.clone())
        .build();
    let sessions = Arc::new(
        SessionManager::builder(Arc::clone(&config.store))
            .clock(clock.clone())
            .build(),
    );
    let cookie = SessionCookie::new().secure(config.secure_cookie);
    let state = AppState {
        cache,
        sessions: Arc::clone(&sessions),
        cookie: cookie.clone(),
        catalog,
    };
    let router = Router::new()
        .route("/products/{id}", get(product))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "No such route") })
        .with_state(state)
        .layer(SessionLayer::shared(sessions, cookie));
    Ok(match config.rate_limit {
        Some(limit) => {
            let limiter =
                RateLimiter::builder(Arc::clone(&config.store), limit, Duration::from_secs(60))
                    .clock(clock)
                    .build();
            router.layer(RateLimitLayer::new(limiter))
        }
        None => router,
    })
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let config = kv_demo::Config::new(std::sync::Arc::new(kvkit::memory::MemoryStore::new()), "demo.sqlite3");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// kv_demo::serve(listener, kv_demo::router(config).unwrap(), async {}).await
/// # }
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn cache_options() -> CacheOptions {
    CacheOptions::new(Duration::from_secs(300))
        .stale_while_revalidate(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(30))
}

async fn product(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "A product id is a positive integer",
        );
    };
    let catalog = state.catalog.clone();
    let lookup = state
        .cache
        .get_or_fetch_optional(
            &format!("product:{id}"),
            &cache_options(),
            move || async move { catalog.product(id).await },
        )
        .await;
    match lookup {
        Ok(cached) => {
            let status = HeaderValue::from_static(cached.status.as_str());
            let mut response = match cached.value {
                Some(product) => Json(serde_json::json!({ "data": product })).into_response(),
                None => json_error(StatusCode::NOT_FOUND, "Unknown product"),
            };
            response.headers_mut().insert("x-cache", status);
            response
        }
        Err(error) => {
            tracing::error!(%error, "product lookup failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The catalog is unavailable",
            )
        }
    }
}

#[derive(Deserialize)]
struct Login {
    email: String,
}

async fn login(
    State(state): State<AppState>,
    previous: Option<CurrentSession<Session>>,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    let Json(login) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return json_error(
                rejection.status(),
                &format!("Bad login request: {}", rejection.body_text()),
            );
        }
    };
    let user = match state.catalog.user(login.email).await {
        Ok(Some(user)) => user,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "Unknown user"),
        Err(error) => {
            tracing::error!(%error, "user lookup failed");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The user database is unavailable",
            );
        }
    };
    // A new id at every login: an id planted before login is worthless after it.
    if let Some(previous) = previous
        && let Err(error) = state.sessions.destroy(&previous.id).await
    {
        tracing::warn!(%error, "could not destroy the previous session");
    }
    let (user_id, email, role) = user;
    match state.sessions.create_for(&user_id, &email, &role).await {
        Ok(id) => {
            let session = serde_json::json!({ "userId": user_id, "email": email, "role": role });
            let mut response = Json(session).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, state.cookie.set(&id));
            response
        }
        Err(error) => {
            tracing::error!(%error, "session creation failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store is unavailable",
            )
        }
    }
}

async fn me(session: CurrentSession<Session>) -> Json<Session> {
    Json(Session::clone(&session.data))
}

async fn logout(State(state): State<AppState>, session: CurrentSession<Session>) -> Response {
    if let Err(error) = state.sessions.destroy(&session.id).await {
        tracing::error!(%error, "session destruction failed");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The session store is unavailable",
        );
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.cookie.clear());
    response
}

/// The workspace README's examples, run as doc tests here (the published `kvkit` crate carries a
/// README of its own, `kv/README.md`, tested as its crate docs).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
