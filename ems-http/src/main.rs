//! `ems-http`: the ems HTTP API. With no database URL it serves the in-memory
//! backend with demo data and prints the URL and the demo accounts.

use std::sync::Arc;

use clap::Parser;
use ems_core::Ems;
use ems_http::{AppBuilder, AuthConfig};
use tracing_subscriber::EnvFilter;

/// The ems HTTP API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "EMS_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// `postgres://…` or `mongodb://…`; the in-memory backend with demo data when absent.
    #[arg(long, env = "EMS_DATABASE_URL")]
    database_url: Option<String>,
    /// MongoDB database name (with a `mongodb://` URL).
    #[arg(long, env = "EMS_MONGO_DATABASE", default_value = "ems")]
    mongo_database: String,
    /// Secret for access tokens (32+ bytes); a random one per start when absent
    /// (tokens then do not survive restarts nor work across servers).
    #[arg(long, env = "EMS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Key for ticket codes (32+ bytes); random per start when absent.
    #[arg(long, env = "EMS_TICKET_KEY", hide_env_values = true)]
    ticket_key: Option<String>,
    /// Browser origins allowed by CORS (comma-separated, `*` for any).
    #[arg(long, env = "EMS_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Requests per second allowed from one client address (bursts of twice that).
    #[arg(long, env = "EMS_RATE_LIMIT_IP", default_value_t = 200)]
    rate_limit_ip: u32,
    /// Requests per second allowed for one user (bursts of twice that).
    #[arg(long, env = "EMS_RATE_LIMIT_USER", default_value_t = 50)]
    rate_limit_user: u32,
    /// Seed demo data even on a database.
    #[arg(long, env = "EMS_DEMO")]
    demo: bool,
    /// PostgreSQL: write the documents of holds, bookings and payments as
    /// `json` from now on, for every server of this version that starts
    /// afterwards (a database this version creates does so from the start).
    /// Only once no server of a version before migration 0005 uses the
    /// database: those read `jsonb` documents only.
    #[arg(long, env = "EMS_WRITE_DOCUMENTS_AS_JSON")]
    write_documents_as_json: bool,
    /// Log as JSON lines (the default when not on a terminal).
    #[arg(long, env = "EMS_LOG_JSON")]
    log_json: Option<bool>,
}

fn random_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

/// The store, its name, and where credentials live (beside the store's data,
/// so every server over one database shares logins).
type Backend = (
    Arc<dyn ems_core::Store>,
    &'static str,
    Arc<dyn ems_http::CredentialStore>,
);

async fn store(args: &Args) -> Result<Backend, Box<dyn std::error::Error>> {
    let postgres = args
        .database_url
        .as_deref()
        .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    if args.write_documents_as_json && !postgres {
        return Err("--write-documents-as-json applies to a PostgreSQL database".into());
    }
    match args.database_url.as_deref() {
        None => Ok((
            Arc::new(ems_storage_memory::MemoryStore::new()),
            "memory",
            Arc::new(ems_http::MemoryCredentials::new()),
        )),
        #[cfg(feature = "postgres")]
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = ems_storage_postgres::PostgresStore::connect(url).await?;
            store.migrate().await?;
            if args.write_documents_as_json {
                store.write_documents_as_json().await?;
            }
            let credentials = ems_http::auth::PostgresCredentials::new(store.pool().clone());
            credentials.ensure_schema().await?;
            Ok((Arc::new(store), "postgres", Arc::new(credentials)))
        }
        #[cfg(feature = "mongo")]
        Some(url) if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") => {
            let store = ems_storage_mongo::MongoStore::connect(url, &args.mongo_database).await?;
            store.ensure_indexes().await?;
            let credentials = ems_http::auth::MongoCredentials::new(store.database().clone());
            credentials.ensure_indexes().await?;
            Ok((Arc::new(store), "mongo", Arc::new(credentials)))
        }
        Some(url) => Err(format!(
            "unsupported database URL {:?}: expected postgres:// or mongodb://",
            url.split('@').next_back().unwrap_or(url)
        )
        .into()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = args
        .log_json
        .unwrap_or_else(|| !std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }

    let (store, backend, credentials) = store(&args).await?;
    let ticket_key = args
        .ticket_key
        .as_ref()
        .map_or_else(random_secret, |k| k.as_bytes().to_vec());
    let ems = Ems::builder(store).ticket_key(&ticket_key).build()?;
    let secret = args
        .jwt_secret
        .as_ref()
        .map_or_else(random_secret, |s| s.as_bytes().to_vec());
    let app = AppBuilder::new(ems.clone(), backend, AuthConfig::new(secret))
        .credentials(credentials)
        .cors_origins(args.cors_origins.clone())
        .rate_limits(
            ems_http::RateLimit::per_second(args.rate_limit_ip),
            ems_http::RateLimit::per_second(args.rate_limit_user),
        )
        .build()?;

    let demo = if backend == "memory" || args.demo {
        Some(ems_http::demo::seed(&ems, &app.state().auth).await?)
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    let addr = listener.local_addr()?;
    println!("ems-http serving on http://{addr} (backend: {backend})");
    println!("  OpenAPI: http://{addr}/openapi.json");
    if let Some(demo) = &demo {
        println!("  demo accounts (password {:?}):", ems_http::demo::PASSWORD);
        for (role, email) in &demo.accounts {
            println!("    {role:<10} {email}");
        }
        println!("  demo coupon: {}", demo.coupon);
        println!("  try: curl -s http://{addr}/events | head -c 400; echo");
    }
    ems_http::serve(listener, app.router(), shutdown_signal()).await?;
    Ok(())
}
