//! The server loop: connections accepted within `max_connections`, HTTP/1.1 by hyper,
//! and the connection timeouts of `[limits]`. Headers, idle connections and stalled
//! writes are watched here, on the socket (`Watched`); request bodies are timed where
//! they are read (`extract::read_body`), so a slow one is answered 408.
//!
//! The timeouts follow nginx's: `header_timeout` counts from a request's first byte
//! (or the connection's acceptance) to its last header; `idle_timeout` from the last
//! byte moved while no request is being handled (a keep-alive connection between
//! requests, a client that stopped reading its response). While a request is being
//! handled nothing on the socket is timed but a stalled write.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use crate::config::Limits;
use crate::http::Measuring;

/// How often "all connections are in use" is logged at most.
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// A lingering close, as nginx's `lingering_close`: after the last response, what the
/// client still sends (the rest of a body refused early) is read and dropped for this
/// long or this many bytes. Closing a socket with unread bytes makes the kernel answer
/// with a reset, and the client may lose the response it was about to read.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting,
/// closes idle connections and waits for in-flight requests to finish. `measured`:
/// every request is counted for `/-/metrics`.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: &Limits,
    measured: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let timeouts = Timeouts {
        header: limits.header_timeout(),
        idle: limits.idle_timeout(),
    };
    let max = usize::try_from(limits.max_connections).unwrap_or(usize::MAX);
    let permits = Arc::new(Semaphore::new(max));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer starts when a connection waits for its next request,
    // so it would also cut idle keep-alive connections: `Watched` times both.
    http.header_read_timeout(None);
    let mut full = FullLog::default();
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                full.note(max);
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a tarball's last segment waits on Nagle + delayed ACK
        // (~40 ms a response on keep-alive connections).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn = Arc::new(ConnState::default());
        let io = TokioIo::new(Watched::new(stream, conn.clone(), timeouts));
        let tower = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let handling = Handling::begin(&conn);
            let measuring = measured.then(|| Measuring::begin(&request));
            let response = hyper::service::Service::call(&tower, request);
            async move {
                let response = response.await?;
                if let Some(measuring) = measuring {
                    measuring.finish(&response);
                }
                Ok::<_, Infallible>(response.map(|body| TrackedBody {
                    body,
                    _handling: handling,
                }))
            }
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What `accept` failing means: the peer gave up (try the next one), or the process
/// is out of something (file descriptors): wait a moment instead of spinning.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind as K;
    if matches!(
        error.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept connections; trying again in a second (is the open-file limit, ulimit -n, above limits.max_connections?)");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// "All connections are in use", said once a minute at most, with how often it
/// happened in between.
#[derive(Default)]
struct FullLog {
    last: Option<Instant>,
    since: u64,
}

impl FullLog {
    fn note(&mut self, max: usize) {
        self.since += 1;
        if self.last.is_some_and(|last| last.elapsed() < FULL_LOG_EVERY) {
            return;
        }
        tracing::warn!(
            max_connections = max,
            times = self.since,
            "all connections are in use (limits.max_connections): new connections wait until one closes"
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// What the socket's watch needs to know of the requests on its connection.
#[derive(Default)]
struct ConnState {
    /// Requests whose headers have arrived.
    started: AtomicU64,
    /// Requests being handled: from their headers until their response body ends.
    handling: AtomicUsize,
    /// The last request being handled ended: the socket must set its timer again
    /// (hyper may not read until the socket wakes it). Hyper flushes right after a
    /// response body ends, so `Watched::poll_flush` sees this without a wake-up.
    ended: AtomicBool,
}

/// A request being handled; dropped with its response body (or its handler).
struct Handling(Arc<ConnState>);

impl Handling {
    fn begin(conn: &Arc<ConnState>) -> Handling {
        conn.started.fetch_add(1, Ordering::Relaxed);
        conn.handling.fetch_add(1, Ordering::Relaxed);
        Handling(conn.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if self.0.handling.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.ended.store(true, Ordering::Relaxed);
        }
    }
}

/// A response body that keeps its request counted as handled until it ends.
struct TrackedBody {
    body: Body,
    _handling: Handling,
}

impl HttpBody for TrackedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, with a deadline checked whenever it has to wait: a read or a write
/// that is pending past it fails (`TimedOut`), and hyper closes the connection.
struct Watched {
    stream: TcpStream,
    conn: Arc<ConnState>,
    timeouts: Timeouts,
    /// When the next request's first byte arrived (or the connection was accepted),
    /// and how many requests had started then: stale once another one starts.
    head: Option<(u64, Instant)>,
    /// The last byte read or written.
    last_activity: Instant,
    write_pending: bool,
    timer: Pin<Box<Sleep>>,
    /// What `timer` is set to; it may fire early (the deadline moved), then it is
    /// set again.
    armed: Instant,
    /// Bytes still to read and drop once the write side is shut (`LINGER_BYTES`).
    lingering: Option<usize>,
}

impl Watched {
    fn new(stream: TcpStream, conn: Arc<ConnState>, timeouts: Timeouts) -> Watched {
        let now = Instant::now();
        let first = now + timeouts.header;
        Watched {
            stream,
            conn,
            timeouts,
            head: Some((0, now)),
            last_activity: now,
            write_pending: false,
            timer: Box::pin(tokio::time::sleep_until(first)),
            armed: first,
            lingering: None,
        }
    }

    /// The lingering close, after the write side was shut: reads and drops until the
    /// client closes too, `LINGER_BYTES` have come or `LINGER_TIME` has passed.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 8192];
        loop {
            let Some(left) = self.lingering else {
                return Poll::Ready(());
            };
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && buf.filled().len() < left => {
                    self.lingering = Some(left - buf.filled().len());
                }
                Poll::Ready(_) => return Poll::Ready(()),
                // Done when the linger time is up.
                Poll::Pending => return self.timer.as_mut().poll(cx),
            }
        }
    }

    fn read_some(&mut self) {
        let now = Instant::now();
        self.last_activity = now;
        if self.conn.handling.load(Ordering::Relaxed) == 0 {
            let started = self.conn.started.load(Ordering::Relaxed);
            if self.head.is_none_or(|(at, _)| at != started) {
                self.head = Some((started, now));
            }
        }
    }

    /// The moment this connection has waited too long, if anything is timed now.
    fn deadline(&self) -> Option<Instant> {
        if self.conn.handling.load(Ordering::Relaxed) > 0 {
            // The handler decides how long a request takes (bodies are timed as they are
            // read); only a client that stopped reading its response is cut off.
            return self.write_pending.then(|| self.last_activity + self.timeouts.idle);
        }
        let started = self.conn.started.load(Ordering::Relaxed);
        Some(match self.head {
            Some((at, first_byte)) if at == started => first_byte + self.timeouts.header,
            _ => self.last_activity + self.timeouts.idle,
        })
    }

    /// Called when the socket is not ready: `Ready` with the error once the deadline
    /// has passed, `Pending` (with the timer's wake-up registered) before.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        loop {
            if deadline < self.armed {
                self.timer.as_mut().reset(deadline);
                self.armed = deadline;
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, self.what_timed_out()));
                }
                Poll::Ready(()) => {
                    self.timer.as_mut().reset(deadline);
                    self.armed = deadline;
                }
            }
        }
    }

    /// A write's outcome, with its bookkeeping: a pending write is watched for a client
    /// that stopped reading; a finished one is activity.
    fn wrote(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Pending => {
                self.write_pending = true;
                self.check(cx).map(Err)
            }
            ready => {
                self.write_pending = false;
                self.last_activity = Instant::now();
                ready
            }
        }
    }

    fn what_timed_out(&self) -> &'static str {
        let started = self.conn.started.load(Ordering::Relaxed);
        if self.conn.handling.load(Ordering::Relaxed) > 0 || self.write_pending {
            "the client stopped reading its response (limits.idle_timeout_ms)"
        } else if self.head.is_some_and(|(at, _)| at == started) {
            "the request's headers did not arrive in time (limits.header_timeout_ms)"
        } else {
            "idle connection (limits.idle_timeout_ms)"
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.check(cx).map(Err),
            ready => ready,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        self.wrote(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.ended.swap(false, Ordering::Relaxed)
            && let Poll::Ready(e) = self.check(cx)
        {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.lingering.is_none() {
            std::task::ready!(Pin::new(&mut self.stream).poll_shutdown(cx))?;
            let until = Instant::now() + LINGER_TIME;
            self.timer.as_mut().reset(until);
            self.armed = until;
            self.lingering = Some(LINGER_BYTES);
        }
        self.poll_linger(cx).map(Ok)
    }
}
