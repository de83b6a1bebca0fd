//! Building and running the server: bind (port 0 works), wire shared state, handle signals.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::lifecycle::Lifecycle;
use crate::limits::StreamLimits;
use crate::metrics::Metrics;
use crate::ratelimit::{self, RateLimits};
use crate::registry::Registry;
use crate::settings::Settings;
use crate::state::{AppState, Shared};
use crate::upstream::ClientBuildError;

/// Connections the kernel queues, fully established, before the acceptor takes them.
///
/// std's `TcpListener::bind` listens with 128. A burst larger than that (thousands of
/// EventSource clients reconnecting together after a restart or a network blip, or a load
/// balancer failing over to this instance) overflows the queue while actix's single accept
/// thread hands sockets to the workers; the kernel then drops the handshakes and clients
/// retry only after 1 s, 3 s, 7 s... of SYN back-off, which shows up as seconds of added
/// time to first token. 2048 is actix-server's own default for sockets it binds itself
/// (this one is bound here, so that start-up can name the address that failed); queued
/// connections cost only kernel memory while they wait; the kernel caps the value at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] ClientBuildError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    shared: Shared,
}

impl Application {
    /// Binds the listener and builds the server; call inside an actix system
    /// (`#[actix_web::main]`, `#[actix_web::test]`).
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        // Listening again on a listening socket only changes its queue length.
        socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG as i32)?;
        let port = listener.local_addr()?.port();
        let metrics = Metrics::new(&crate::routes::PATTERNS);
        // Built once here so a bad upstream setting fails start-up, then per worker below.
        let backend = Backend::new(&settings, &metrics)?;
        let shared = Shared {
            registry: Registry::new(
                Duration::from_secs(settings.stream_ttl_secs.get()),
                Duration::from_secs(settings.resume_grace_secs.get()),
            ),
            limits: StreamLimits::new(
                settings.max_streams,
                settings.max_streams_per_client,
                Arc::clone(&metrics),
            ),
            rate_limits: RateLimits::from_settings(&settings, Arc::clone(&metrics)),
            lifecycle: Arc::new(Lifecycle::default()),
            metrics,
            settings: Arc::new(settings),
        };
        shared.registry.spawn_sweeper();
        shared.limits.spawn_memory_watch();
        shared.rate_limits.spawn_pruner(ratelimit::PRUNE_EVERY);
        let factory_shared = shared.clone();
        let workers = match shared.settings.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let server = HttpServer::new(move || {
            let shared = factory_shared.clone();
            // Each worker gets its own upstream connection pool.
            let backend =
                Backend::new(&shared.settings, &shared.metrics).unwrap_or_else(|_| backend.clone());
            let cors = crate::cors::middleware(&shared.settings);
            App::new()
                .app_data(web::Data::new(AppState { shared, backend }))
                // The last `.wrap` is the outermost. CORS sits outside auth so a preflight,
                // which never carries a key, is answered before auth sees it; request ids sit
                // outside CORS so preflights get one too.
                .wrap(from_fn(crate::auth::authenticate))
                .wrap(cors)
                .wrap(from_fn(crate::request_id::assign))
                .configure(crate::routes::configure)
        })
        // Nagle would hold each small SSE write back by ~40 ms.
        .tcp_nodelay(true)
        // A client's EOF then ends its request at once, so a gone client drops its upstream
        // request even while the upstream is silent (actix otherwise notices only on write).
        .h1_allow_half_closed(false)
        // Signals are ours: draining needs to happen before actix stops accepting.
        .disable_signals()
        .shutdown_timeout(5)
        .workers(workers)
        // Only used for sockets actix binds itself; ours got it above. Set for consistency.
        .backlog(LISTEN_BACKLOG)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            shared,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`Application::handle`], ignoring signals (for tests).
    pub async fn serve(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGTERM or SIGINT, then drains (see [`drain`]).
    pub async fn run_until_stopped(self, signals: StopSignals) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shared = self.shared.clone();
        actix_web::rt::spawn(async move {
            signals.recv().await;
            drain(&shared, &handle).await;
        });
        self.server.await
    }
}

/// Graceful shutdown: readiness turns 503 and new generations are refused; running streams
/// get `SHUTDOWN_GRACE_SECS` to finish; whatever still runs then ends with `error`
/// (`shutting_down`) and `stop`; then the server stops.
pub async fn drain(shared: &Shared, handle: &ServerHandle) {
    shared.lifecycle.start_draining();
    let grace = Duration::from_secs(shared.settings.shutdown_grace_secs);
    tracing::info!(
        active = shared.limits.active(),
        grace_secs = grace.as_secs(),
        "shutting down: draining streams"
    );
    wait_until_idle(shared, Instant::now() + grace).await;
    if shared.limits.active() > 0 {
        tracing::warn!(
            active = shared.limits.active(),
            "grace period over: ending the streams still running"
        );
        shared.lifecycle.cut_streams();
        wait_until_idle(shared, Instant::now() + Duration::from_secs(5)).await;
    }
    handle.stop(true).await;
}

async fn wait_until_idle(shared: &Shared, deadline: Instant) {
    while shared.limits.active() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM and SIGINT, heard from the moment this is made. Made before the startup line is
/// logged: a supervisor (or a test) that signals as soon as it sees that line must find the
/// handler in place, not the default action, which kills the process without draining.
pub struct StopSignals {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Installs the handlers now; needs the runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listeners = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::error!("cannot listen for signals; stop with SIGKILL");
                    None
                }
            };
            Self { listeners }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(self) {
        #[cfg(unix)]
        match self.listeners {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            None => futures::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
