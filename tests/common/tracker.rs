//! `FakeTracker`: a tiny HTTP tracker on 127.0.0.1 that answers every
//! announce with the compact peer list it was given (interval 1800) and
//! records each request line, so a test can check the events a client sent.
//!
//! One accept thread plus one short-lived thread per connection; reads have
//! timeouts and the tracker stops on drop.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shoal::proto::bencode::Owned;

/// How the tracker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerMode {
    /// `d8:intervali1800e5:peers<compact>e` with the current peer list.
    Peers,
    /// `d14:failure reason<msg>e`.
    Failure(String),
    /// Accepts the connection, reads the request, never answers (until the
    /// client gives up or the tracker stops).
    Hang,
}

struct Shared {
    peers: Mutex<Vec<SocketAddr>>,
    mode: Mutex<TrackerMode>,
    requests: Mutex<Vec<(Instant, String)>>,
    stop: AtomicBool,
}

pub struct FakeTracker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// How long one connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The tracker stops by itself after this long.
const LIFETIME: Duration = Duration::from_secs(180);

impl FakeTracker {
    /// A tracker that hands out `peers`.
    pub fn start(peers: &[SocketAddr]) -> FakeTracker {
        Self::with_mode(peers, TrackerMode::Peers)
    }

    pub fn with_mode(peers: &[SocketAddr], mode: TrackerMode) -> FakeTracker {
        Self::on("127.0.0.1:0".parse().unwrap(), peers, mode)
    }

    /// A tracker listening on `addr` (inside a namespace host: call it on
    /// a thread there, common::netns's `in_host`).
    pub fn on(addr: SocketAddr, peers: &[SocketAddr], mode: TrackerMode) -> FakeTracker {
        let listener = TcpListener::bind(addr).expect("bind tracker");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            peers: Mutex::new(peers.to_vec()),
            mode: Mutex::new(mode),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("tracker-{addr}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn tracker");
        FakeTracker {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/announce`
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    pub fn set_peers(&self, peers: &[SocketAddr]) {
        *self.shared.peers.lock().unwrap() = peers.to_vec();
    }

    pub fn set_mode(&self, mode: TrackerMode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Every request line received so far (`GET /announce?... HTTP/1.1`),
    /// in order of arrival.
    pub fn requests(&self) -> Vec<String> {
        let r = self.shared.requests.lock().unwrap();
        r.iter().map(|(_, line)| line.clone()).collect()
    }

    /// The `event` parameter of each announce in order; `""` for a regular
    /// re-announce without one.
    pub fn events(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|l| l.contains("/announce"))
            .map(|l| query_param(l, "event").unwrap_or_default())
            .collect()
    }

    /// Waits until some announce carried `event=NAME`.
    pub fn wait_for_event(&self, name: &str, deadline: Duration) -> bool {
        super::wait_until(deadline, || self.events().iter().any(|e| e == name))
    }
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The raw value of `key` in a request line's query, percent-decoded.
pub fn query_param_bytes(request_line: &str, key: &str) -> Option<Vec<u8>> {
    let target = request_line.split(' ').nth(1)?;
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// `query_param_bytes` as text (lossy).
pub fn query_param(request_line: &str, key: &str) -> Option<String> {
    query_param_bytes(request_line, key).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let deadline = Instant::now() + LIFETIME;
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(&shared);
                conns.push(thread::spawn(move || {
                    let _ = handle(stream, &s);
                }));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
        conns.retain(|t| !t.is_finished());
    }
    for t in conns {
        let _ = t.join();
    }
}

fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if shared.stop.load(Ordering::SeqCst) || start.elapsed() > REQUEST_TIMEOUT {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").to_string();
    shared.requests.lock().unwrap().push((Instant::now(), line));

    let mode = shared.mode.lock().unwrap().clone();
    let body = match mode {
        TrackerMode::Peers => {
            let (v4, v6) = shoal::proto::tracker::encode_compact(&shared.peers.lock().unwrap());
            let mut d = Owned::dict()
                .insert("interval", 1800)
                .insert("peers", v4)
                .insert("complete", 1)
                .insert("incomplete", 0);
            if !v6.is_empty() {
                d = d.insert("peers6", v6);
            }
            d.encode()
        }
        TrackerMode::Failure(msg) => Owned::dict()
            .insert("failure reason", msg.as_str())
            .encode(),
        TrackerMode::Hang => {
            // Hold the connection open until the client leaves or we stop.
            while !shared.stop.load(Ordering::SeqCst) {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            return Ok(());
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}
