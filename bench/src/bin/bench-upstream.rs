//! bench-upstream: a minimal, fast, paced OpenAI-compatible streaming upstream for benchmarks.
//!
//! `POST /v1/chat/completions` with `"stream": true` answers `text/event-stream`: `--chunks`
//! content chunks (`--ttft-ms` until the first, `--delay-ms` between the others), a finish chunk
//! with `finish_reason: "stop"` one delay later, a usage chunk with empty `choices` when
//! `stream_options.include_usage` is true, then `data: [DONE]`. Every event is its own write
//! (one `writev` with the chunked-encoding framing) even when no delay separates them, as a real
//! token-by-token upstream does. `GET /v1/models` lists the model. A request body may override
//! the pacing with `bench_chunks`, `bench_delay_ms`, `bench_ttft_ms` (extra fields a gateway
//! forwards unchanged), unless `--no-overrides` is given.
//!
//! The schedule is absolute (chunk i is due at `start + ttft + i * delay`), so a busy moment in
//! this process does not stretch the rest of the stream. A timerfd paces it to the microsecond
//! (`--timer fine`, see `streamgate_bench::pace` for why tokio's millisecond timer distorts a
//! closed loop); `--timer tokio` keeps the millisecond pacing of earlier rounds.
//!
//! Runtime: current-thread by default (`--threads 1`). Each event costs the upstream a timer
//! wake-up and a write of ~200 bytes; one thread serves tens of thousands of such events per
//! second, without cross-thread wake-ups or work stealing. On the 2-core benchmark machine that
//! leaves the other core to the system under test and the load generator, and the mock's cost
//! stays the same, predictable share in every configuration it is compared in. `--threads N`
//! switches to a multi-threaded runtime when the mock itself must not be the limit.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use clap::Parser;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use streamgate_bench::pace::{Clock, Pacer, Sleep};
use tokio::{net::TcpSocket, time::Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "bench-upstream",
    about = "Paced OpenAI-compatible streaming mock upstream"
)]
struct Args {
    /// Address to listen on (loopback only for benchmarks).
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 32)]
    chunks: u32,
    /// Delay between chunks, in milliseconds.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// Delay before the first chunk, in milliseconds (default: --delay-ms).
    #[arg(long)]
    ttft_ms: Option<u64>,
    /// Model name reported when the request names none.
    #[arg(long, default_value = "bench-model")]
    model: String,
    /// Text of each content chunk.
    #[arg(long, default_value = "tok ")]
    token: String,
    /// Runtime worker threads: 1 = current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Listen backlog.
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Ignore bench_chunks / bench_delay_ms / bench_ttft_ms in request bodies.
    #[arg(long)]
    no_overrides: bool,
    /// What paces the events: `fine` (a timerfd, sub-millisecond) or `tokio` (tokio's timer,
    /// whole milliseconds; what rounds before 2026-12-07 measured with).
    #[arg(long, value_enum, default_value_t = TimerKind::Fine)]
    timer: TimerKind,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1, by ALPN) with a self-signed certificate for localhost
    /// and 127.0.0.1, generated at start and written (PEM) to this path for the client to
    /// trust (`SSL_CERT_FILE`). Used by scripts/build-pgo.sh to train the gateway's https path.
    #[arg(long, value_name = "CERT_OUT")]
    tls: Option<std::path::PathBuf>,
    /// Hold a streamed answer's response head until its first event is due and send the two
    /// together. By default the head goes out at once, as OpenAI's and vLLM's do; held, a relay
    /// that passes heads through (nginx) sends its client the head with the first event too,
    /// as the gateway always does (DESIGN.md commits an answer only at its first event).
    #[arg(long)]
    head_with_first: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TimerKind {
    Fine,
    Tokio,
}

struct Cfg {
    chunks: u32,
    delay: Duration,
    ttft: Duration,
    model: String,
    /// The token as a JSON string literal, quotes included.
    token_json: String,
    overrides: bool,
    head_with_first: bool,
    next_id: AtomicU64,
    clock: Clock,
}

type RespBody = Either<Full<Bytes>, ChunkStream>;

fn main() {
    let args = Args::parse();
    let rt = streamgate_bench::runtime(args.threads).expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("bench-upstream: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let cfg = Arc::new(Cfg {
        chunks: args.chunks,
        delay: Duration::from_millis(args.delay_ms),
        ttft: Duration::from_millis(args.ttft_ms.unwrap_or(args.delay_ms)),
        token_json: serde_json::to_string(&args.token).unwrap_or_else(|_| "\"tok \"".into()),
        model: args.model.clone(),
        overrides: !args.no_overrides,
        head_with_first: args.head_with_first,
        next_id: AtomicU64::new(1),
        clock: match args.timer {
            TimerKind::Fine => Clock::Fine(Pacer::start()?),
            TimerKind::Tokio => Clock::Tokio,
        },
    });
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(args.backlog)?;
    eprintln!(
        "bench-upstream listening on {}://{} (chunks={} ttft={}ms delay={}ms threads={} timer={:?})",
        if args.tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        cfg.chunks,
        cfg.ttft.as_millis(),
        cfg.delay.as_millis(),
        args.threads.max(1),
        args.timer
    );
    let tls = args.tls.as_deref().map(tls_acceptor).transpose()?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = sigterm.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("bench-upstream: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let cfg = cfg.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, cfg, false).await,
                Some(tls) => {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_connection(stream, cfg, h2).await;
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, cfg: Arc<Cfg>, h2: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(req, cfg.clone()));
    let io = TokioIo::new(io);
    let _ = if h2 {
        http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, svc)
            .await
    };
}

/// A TLS acceptor with a fresh self-signed certificate, whose PEM is written to `cert_out`.
fn tls_acceptor(cert_out: &std::path::Path) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::{ServerConfig, pki_types::PrivatePkcs8KeyDer};
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).map_err(|e| invalid(&e))?;
    std::fs::write(cert_out, cert.pem())?;
    let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn json_response(status: StatusCode, v: &Value) -> Response<RespBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(v.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(status: StatusCode, msg: &str) -> Response<RespBody> {
    json_response(
        status,
        &json!({"error": {"message": msg, "type": "invalid_request_error", "code": null}}),
    )
}

async fn handle(req: Request<Incoming>, cfg: Arc<Cfg>) -> Result<Response<RespBody>, Infallible> {
    let path = req.uri().path();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    Ok(match (req.method(), path) {
        (&Method::GET, "/models") => json_response(
            StatusCode::OK,
            &json!({"object": "list", "data": [
                {"id": cfg.model, "object": "model", "created": 1_700_000_000, "owned_by": "bench"}
            ]}),
        ),
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::POST, "/chat/completions") => chat(req, &cfg).await,
        _ => error_response(StatusCode::NOT_FOUND, "unknown path"),
    })
}

async fn chat(req: Request<Incoming>, cfg: &Cfg) -> Response<RespBody> {
    let start = Instant::now();
    let body = match Limited::new(req.into_body(), 8 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("reading body: {e}"));
        }
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = v
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&cfg.model)
        .to_string();
    let ovr = |k: &str| {
        if cfg.overrides {
            v.get(k).and_then(Value::as_u64)
        } else {
            None
        }
    };
    let chunks = ovr("bench_chunks").map_or(cfg.chunks, |c| c.min(1_000_000) as u32);
    let delay = ovr("bench_delay_ms").map_or(cfg.delay, Duration::from_millis);
    let ttft = ovr("bench_ttft_ms").map_or(cfg.ttft, Duration::from_millis);
    let prompt_chars: usize = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    let prompt_tokens = (prompt_chars / 4 + 8) as u64;

    let n = cfg.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-bench{n:016x}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let model_json = serde_json::to_string(&model).unwrap_or_else(|_| "\"bench\"".into());

    if !stream {
        cfg.clock.sleep_until(start + ttft + delay * chunks).await;
        let token: String = serde_json::from_str(&cfg.token_json).unwrap_or_default();
        return json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": token.repeat(chunks as usize)}, "logprobs": null,
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": chunks,
                    "total_tokens": prompt_tokens + u64::from(chunks)},
            }),
        );
    }

    if cfg.head_with_first {
        // The body's first event is then due at once: hyper writes it with the head.
        cfg.clock.sleep_until(start + ttft).await;
    }
    let prefix = format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\
         \"model\":{model_json},\"system_fingerprint\":\"fp_bench\",\"choices\":["
    )
    .into_bytes();
    let body = ChunkStream {
        prefix,
        token_json: cfg.token_json.clone(),
        chunks,
        delay,
        first_at: start + ttft,
        next: 0,
        include_usage,
        prompt_tokens,
        sleep: cfg.clock.sleep_until(start + ttft),
        yield_first: false,
        done: false,
    };
    let mut r = Response::new(Either::Right(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// The streamed answer, produced event by event on schedule.
struct ChunkStream {
    prefix: Vec<u8>,
    token_json: String,
    chunks: u32,
    delay: Duration,
    first_at: Instant,
    /// Next event: 0..chunks content, chunks = finish, chunks+1 = usage, chunks+2 = [DONE].
    next: u32,
    include_usage: bool,
    prompt_tokens: u64,
    sleep: Sleep,
    /// Return Pending once before the next frame, so hyper flushes each event on its own.
    yield_first: bool,
    done: bool,
}

impl ChunkStream {
    fn due(&self, i: u32) -> Instant {
        // Finish, usage and [DONE] share the slot after the last content chunk.
        self.first_at + self.delay * i.min(self.chunks)
    }

    fn render(&self, i: u32) -> Bytes {
        if i == self.chunks + 2 {
            return Bytes::from_static(b"data: [DONE]\n\n");
        }
        let mut b = Vec::with_capacity(self.prefix.len() + 128);
        b.extend_from_slice(&self.prefix);
        if i < self.chunks {
            b.extend_from_slice(b"{\"index\":0,\"delta\":{");
            if i == 0 {
                b.extend_from_slice(b"\"role\":\"assistant\",");
            }
            b.extend_from_slice(b"\"content\":");
            b.extend_from_slice(self.token_json.as_bytes());
            b.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        } else if i == self.chunks {
            b.extend_from_slice(
                b"{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
            );
        } else {
            let c = u64::from(self.chunks);
            let p = self.prompt_tokens;
            b.extend_from_slice(
                format!(
                    "],\"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":{}}}}}\n\n",
                    p + c
                )
                .as_bytes(),
            );
            // The prefix already opened `choices:[`; the usage chunk closes it empty.
        }
        Bytes::from(b)
    }
}

impl Body for ChunkStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.yield_first {
            this.yield_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.next == this.chunks + 1 && !this.include_usage {
            this.next += 1;
        }
        let due = this.due(this.next);
        if due > Instant::now() {
            if this.sleep.deadline() != due {
                this.sleep.reset(due);
            }
            if Pin::new(&mut this.sleep).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let bytes = this.render(this.next);
        this.next += 1;
        this.done = this.next > this.chunks + 2;
        this.yield_first = true;
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
