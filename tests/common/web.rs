//! HTTP servers for web seed tests (BEP 19): a real nginx with range
//! support, and a small server that misbehaves on purpose.

use super::free_port;
use super::process::{on_path, External};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const NGINX: &str = "/usr/sbin/nginx";

/// Whether nginx is installed; missing, the test is skipped loudly (or
/// fails under CI=true, where `.ci/run` installs it).
pub fn nginx_present(test: &str) -> bool {
    if Path::new(NGINX).exists() || on_path("nginx") {
        return true;
    }
    if super::in_ci() {
        panic!("{test}: nginx not installed, and CI=true: a missing tool is a failure");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {test}: nginx not installed (.ci/run installs it) ***\n"
    );
    false
}

/// nginx serving `root` on 127.0.0.1, in the foreground, with its config,
/// pid file and logs in `dir`; stopped by PID when dropped.
pub struct Nginx {
    proc: External,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(dir: &Path, root: &Path) -> Nginx {
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n\
             proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n\
             scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
            root.display()
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let (prefix, conf, error_log) = (
            format!("{d}/"),
            format!("{d}/nginx.conf"),
            format!("{d}/error.log"),
        );
        let args = [
            "-p",
            &prefix,
            "-e",
            &error_log,
            "-c",
            &conf,
            "-g",
            "daemon off;",
        ];
        let proc = External::start("nginx", Duration::from_secs(300), NGINX, &args, dir);
        let up = super::wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "nginx did not listen on {port}: {}", proc.describe());
        Nginx {
            proc,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// The server's root URL, ending in `/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The request lines logged so far.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

/// How [`BadServer`] answers a range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// 200 with the whole file (no range support).
    WholeFile,
    /// 206 with the right Content-Range but one byte less than asked.
    WrongLength,
    /// 302 to the same URL, for ever.
    RedirectLoop,
    /// 302 to an `ftp://` URL.
    OtherScheme,
    /// 206 with the right headers, then one byte a second.
    Trickle,
    /// 206 with the right headers and length, every byte wrong.
    WrongBytes,
}

/// A web server on 127.0.0.1 that serves `files` (URL path → content) as
/// its [`Misbehaviour`] says, a thread per connection, until the process
/// ends (a test's servers are few and small).
pub struct BadServer {
    port: u16,
    requests: Arc<AtomicU64>,
}

impl BadServer {
    pub fn start(how: Misbehaviour, files: HashMap<String, Vec<u8>>) -> BadServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let (files, counter) = (Arc::new(files), requests.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (files, counter) = (files.clone(), counter.clone());
                thread::spawn(move || serve(conn, how, &files, &counter));
            }
        });
        BadServer { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Answers requests on one connection until it closes.
fn serve(conn: TcpStream, how: Misbehaviour, files: &HashMap<String, Vec<u8>>, count: &AtomicU64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                let (a, b) = v.trim().split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            }
        }
        count.fetch_add(1, Ordering::Relaxed);
        let Some(data) = files.get(&path) else {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        let (a, b) = range.unwrap_or((0, data.len() - 1));
        let slice = &data[a..=b];
        let partial = |len: usize| {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\n\
                 Content-Length: {len}\r\n\r\n",
                data.len()
            )
        };
        let ok = match how {
            Misbehaviour::WholeFile => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
                out.write_all(head.as_bytes())
                    .and_then(|_| out.write_all(data))
            }
            Misbehaviour::WrongLength => out
                .write_all(partial(slice.len() - 1).as_bytes())
                .and_then(|_| out.write_all(&slice[1..])),
            Misbehaviour::RedirectLoop => out.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            ),
            Misbehaviour::OtherScheme => out.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\nContent-Length: 0\r\n\r\n",
            ),
            Misbehaviour::Trickle => {
                let mut r = out.write_all(partial(slice.len()).as_bytes());
                for byte in slice {
                    r = r.and_then(|_| out.write_all(&[*byte]));
                    if r.is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_secs(1));
                }
                r
            }
            Misbehaviour::WrongBytes => {
                let wrong: Vec<u8> = slice.iter().map(|b| !b).collect();
                out.write_all(partial(slice.len()).as_bytes())
                    .and_then(|_| out.write_all(&wrong))
            }
        };
        if ok.is_err() {
            return;
        }
    }
}
