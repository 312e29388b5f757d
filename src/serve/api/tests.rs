//! Every route against an in-memory [`Control`], through raw request
//! bytes, as the server hands them over.

use super::*;
use crate::serve::control::{Counters, File, Metrics, Peer, TorrentMetrics};
use std::sync::Mutex;

const TORRENT: &[u8] = include_bytes!("../../../testdata/mktorrent-single.torrent");
const TORRENT_HASH: &str = "c9c56477501b8684764910f68ff254194739dcd5";
const MAGNET: &str = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x";

/// What the fake was asked.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Add(Source, Option<PathBuf>),
    Remove(InfoHash, bool),
    Pause(InfoHash),
    Resume(InfoHash),
}

/// Torrents in a list; a hash of all 0xee bytes makes every call fail
/// with [`Refusal::Failed`], 0xcc with a clash.
#[derive(Default)]
struct Fake {
    torrents: Mutex<Vec<TorrentStatus>>,
    calls: Mutex<Vec<Call>>,
}

fn status(hash: InfoHash, name: &str, state: State) -> TorrentStatus {
    TorrentStatus {
        info_hash: hash,
        name: name.into(),
        state,
        done: 50,
        size: 200,
        down_rate: 1.5,
        up_rate: f64::NAN,
        downloaded: 60,
        uploaded: 100,
        peers: 2,
        data_dir: "/data/x".into(),
    }
}

impl Fake {
    fn with(torrents: Vec<TorrentStatus>) -> Arc<Fake> {
        Arc::new(Fake {
            torrents: Mutex::new(torrents),
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn known(&self, hash: &InfoHash) -> Result<TorrentStatus, Refusal> {
        if hash.0 == [0xee; 20] {
            return Err(Refusal::Failed("disk on fire".into()));
        }
        let list = self.torrents.lock().unwrap();
        list.iter()
            .find(|s| s.info_hash == *hash)
            .cloned()
            .ok_or(Refusal::Unknown(*hash))
    }
}

impl Control for Fake {
    fn list(&self) -> Vec<TorrentStatus> {
        self.torrents.lock().unwrap().clone()
    }

    fn detail(&self, hash: &InfoHash) -> Result<Detail, Refusal> {
        Ok(Detail {
            status: self.known(hash)?,
            files: vec![File {
                path: "dir/a \"b\".bin".into(),
                length: 200,
                wanted: true,
            }],
            peers: vec![Peer {
                addr: "10.0.0.1:6881".parse().unwrap(),
                client: Some("qBittorrent 4.5".into()),
                down_rate: 10.0,
                up_rate: 0.0,
                inbound: false,
            }],
            pieces: 4,
            have: 1,
            trackers: vec!["http://t/announce".into()],
        })
    }

    fn add(&self, source: Source, dir: Option<PathBuf>) -> Result<InfoHash, Refusal> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Add(source.clone(), dir.clone()));
        let hash = match &source {
            Source::Torrent(bytes) => Metainfo::from_bytes(bytes).unwrap().info_hash,
            Source::Magnet(uri) => Magnet::parse(uri).unwrap().info_hash,
        };
        if dir.as_deref() == Some(std::path::Path::new("taken")) {
            return Err(Refusal::Clash {
                path: "/data/taken".into(),
                other: InfoHash([0xcc; 20]),
            });
        }
        if self.known(&hash).is_ok() {
            return Err(Refusal::Exists(hash));
        }
        let name = "added";
        self.torrents
            .lock()
            .unwrap()
            .push(status(hash, name, State::Checking));
        Ok(hash)
    }

    fn remove(&self, hash: &InfoHash, delete_data: bool) -> Result<(), Refusal> {
        self.known(hash)?;
        self.calls
            .lock()
            .unwrap()
            .push(Call::Remove(*hash, delete_data));
        self.torrents
            .lock()
            .unwrap()
            .retain(|s| s.info_hash != *hash);
        Ok(())
    }

    fn pause(&self, hash: &InfoHash) -> Result<(), Refusal> {
        self.known(hash)?;
        self.calls.lock().unwrap().push(Call::Pause(*hash));
        Ok(())
    }

    fn resume(&self, hash: &InfoHash) -> Result<(), Refusal> {
        self.known(hash)?;
        self.calls.lock().unwrap().push(Call::Resume(*hash));
        Ok(())
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            torrents: self
                .list()
                .into_iter()
                .map(|s| TorrentMetrics {
                    info_hash: s.info_hash,
                    name: s.name,
                    state: s.state,
                    peers: s.peers,
                    counters: Counters::default(),
                })
                .collect(),
            session: Counters::default(),
            peers: 2,
            dht_nodes: None,
        }
    }
}

const A: InfoHash = InfoHash([0xaa; 20]);

fn fake() -> Arc<Fake> {
    Fake::with(vec![
        status(A, "alpha", State::Downloading),
        status(
            InfoHash([0xbb; 20]),
            "beta",
            State::Error("no space".into()),
        ),
    ])
}

/// Sends `method target` with `headers` and `body` to `api`: status, body.
fn call(api: &Api, method: &str, target: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let r = api.handle(head.as_bytes(), body);
    let text = String::from_utf8(r.body).unwrap();
    if r.content_type == JSON {
        json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
    (r.status.code, text)
}

fn get(api: &Api, target: &str) -> (u16, String) {
    call(api, "GET", target, "", b"")
}

fn error_of(body: &str) -> String {
    let v = json::parse(body.as_bytes()).unwrap();
    v.get("error").and_then(Value::as_str).unwrap().to_string()
}

fn hex(h: InfoHash) -> String {
    h.hex()
}

#[test]
fn lists_and_details() {
    let api = Api::new(fake(), None);
    let (code, body) = get(&api, "/torrents");
    assert_eq!(code, 200);
    let v = json::parse(body.as_bytes()).unwrap();
    let Value::Array(items) = v else {
        panic!("{body}")
    };
    assert_eq!(items.len(), 2);
    let a = &items[0];
    let field = |k: &str| a.get(k).cloned().unwrap_or_else(|| panic!("no {k}"));
    assert_eq!(field("info_hash"), Value::String(hex(A)));
    assert_eq!(field("name"), Value::String("alpha".into()));
    assert_eq!(field("state"), Value::String("downloading".into()));
    assert_eq!(field("progress"), Value::Number(0.25));
    assert_eq!(field("ratio"), Value::Number(0.5));
    assert_eq!(field("up_rate"), Value::Number(0.0), "NaN is written as 0");
    assert_eq!(field("peers"), Value::Number(2.0));
    assert_eq!(field("data_dir"), Value::String("/data/x".into()));
    assert_eq!(a.get("error"), None);
    assert_eq!(
        items[1].get("error").and_then(Value::as_str),
        Some("no space")
    );

    let (code, body) = get(&api, &format!("/torrents/{}", hex(A).to_uppercase()));
    assert_eq!(code, 200, "{body}");
    let d = json::parse(body.as_bytes()).unwrap();
    assert_eq!(d.get("pieces"), Some(&Value::Number(4.0)));
    assert_eq!(d.get("have"), Some(&Value::Number(1.0)));
    let Some(Value::Array(files)) = d.get("files") else {
        panic!("{body}")
    };
    assert_eq!(
        files[0].get("path").and_then(Value::as_str),
        Some("dir/a \"b\".bin")
    );
    let Some(Value::Array(peers)) = d.get("peers") else {
        panic!("{body}")
    };
    assert_eq!(
        peers[0].get("client").and_then(Value::as_str),
        Some("qBittorrent 4.5")
    );
    assert_eq!(
        d.get("trackers"),
        Some(&Value::Array(vec![Value::String(
            "http://t/announce".into()
        )]))
    );
}

#[test]
fn adds_torrents_and_magnets() {
    let control = fake();
    let api = Api::new(control.clone(), None);
    let created = |r: (u16, String)| {
        assert_eq!(r.0, 201, "{}", r.1);
        let v = json::parse(r.1.as_bytes()).unwrap();
        v.get("info_hash")
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        created(call(&api, "POST", "/torrents?dir=tv/s01", "", TORRENT)),
        TORRENT_HASH
    );
    let magnet_hash = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        created(call(&api, "POST", "/torrents", "", MAGNET.as_bytes())),
        magnet_hash
    );
    // Again, as JSON: it exists now.
    let body = Object::new().str("magnet", MAGNET).str("dir", "m").finish();
    let (code, body) = call(&api, "POST", "/torrents", "", body.as_bytes());
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        error_of(&body),
        format!("torrent {magnet_hash} is already added")
    );
    // A clash of data paths.
    let other = "magnet:?xt=urn:btih:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = Object::new()
        .str("magnet", other)
        .str("dir", "taken")
        .finish();
    assert_eq!(call(&api, "POST", "/torrents", "", body.as_bytes()).0, 409);
    assert_eq!(
        control.calls()[..2],
        [
            Call::Add(
                Source::Torrent(TORRENT.to_vec()),
                Some(PathBuf::from("tv/s01"))
            ),
            Call::Add(Source::Magnet(MAGNET.into()), None),
        ]
    );
    assert_eq!(
        control.calls()[2],
        Call::Add(Source::Magnet(MAGNET.into()), Some(PathBuf::from("m")))
    );
}

#[test]
fn bad_bodies_are_refused_before_the_manager_sees_them() {
    let control = fake();
    let api = Api::new(control.clone(), None);
    let dotdot = include_bytes!("../../../testdata/path-dotdot.torrent");
    let table: Vec<(&[u8], &str, u16, &str)> = vec![
        (b"", "", 400, "empty body"),
        (b"  \n", "", 400, "empty body"),
        (
            b"hello",
            "",
            400,
            "not a usable torrent: the body is neither",
        ),
        (b"d4:spam", "", 400, "not a usable torrent: "),
        (dotdot, "", 400, "not a usable torrent: "),
        (
            b"magnet:?xt=urn:btih:123",
            "",
            400,
            "not a usable torrent: magnet info hash",
        ),
        (
            b"magnet:?dn=x",
            "",
            400,
            "not a usable torrent: magnet link without xt",
        ),
        (b"{\"magnet\": ", "", 400, "JSON text ends inside a value"),
        (
            b"{\"magnet\": 1}",
            "",
            400,
            "\"magnet\" must be a string, not a number",
        ),
        (
            b"{\"magnet\": \"x\", \"magnet\": \"y\"}",
            "",
            400,
            "JSON: key \"magnet\" appears twice",
        ),
        (
            b"{\"dir\": \"a\"}",
            "",
            400,
            "the JSON body has no \"magnet\"",
        ),
        (b"{\"torrent\": \"a\"}", "", 400, "unknown key \"torrent\""),
        (b"[1]", "", 400, "not a usable torrent"),
        (b"\xff\xfe", "", 400, "not a usable torrent"),
        (
            TORRENT,
            "?dir=..",
            400,
            "data directory \"..\" is not inside the data root",
        ),
        (
            TORRENT,
            "?dir=/etc",
            400,
            "data directory \"/etc\" is not inside",
        ),
        (TORRENT, "?dir=a/../../b", 400, "not inside"),
        (TORRENT, "?dir=a%00b", 400, "not inside"),
        (TORRENT, "?dir=", 400, "not inside"),
        (
            TORRENT,
            "?dir=%zz",
            400,
            "query parameter dir: bad encoding",
        ),
    ];
    for (body, query, want, message) in table {
        let (code, got) = call(&api, "POST", &format!("/torrents{query}"), "", body);
        assert_eq!(
            code,
            want,
            "{}{query}: {got}",
            String::from_utf8_lossy(body)
        );
        assert!(
            error_of(&got).starts_with(message) || error_of(&got).contains(message),
            "{}: {got}",
            String::from_utf8_lossy(body)
        );
    }
    let escape = Object::new()
        .str("magnet", MAGNET)
        .str("dir", "../x")
        .finish();
    assert_eq!(
        call(&api, "POST", "/torrents", "", escape.as_bytes()).0,
        400
    );
    assert_eq!(control.calls(), vec![], "nothing reached the manager");
    assert_eq!(control.list().len(), 2);
}

#[test]
fn checks_dirs() {
    for (dir, want) in [
        ("a", Some("a")),
        ("a/b", Some("a/b")),
        ("a/b/", Some("a/b")),
        ("a b/é", Some("a b/é")),
        ("", None),
        ("/", None),
        ("/a", None),
        ("..", None),
        ("a/..", None),
        (".", None),
        ("a//b", None),
        ("a\0", None),
    ] {
        assert_eq!(check_dir(dir).ok(), want.map(PathBuf::from), "{dir:?}");
    }
}

#[test]
fn removes_pauses_resumes() {
    let control = fake();
    let api = Api::new(control.clone(), None);
    let path = format!("/torrents/{}", hex(A));
    assert_eq!(
        call(&api, "POST", &format!("{path}/pause"), "", b""),
        (200, "{\"ok\":true}".into())
    );
    assert_eq!(
        call(&api, "POST", &format!("{path}/resume"), "", b"").0,
        200
    );
    assert_eq!(
        call(
            &api,
            "DELETE",
            &format!("{path}?delete_data=maybe"),
            "",
            b""
        )
        .0,
        400
    );
    assert_eq!(
        call(&api, "DELETE", &format!("{path}?delete_data=true"), "", b"").0,
        200
    );
    assert_eq!(call(&api, "DELETE", &path, "", b"").0, 404, "gone");
    let b = format!("/torrents/{}", hex(InfoHash([0xbb; 20])));
    assert_eq!(
        call(&api, "DELETE", &format!("{b}?delete_data=false"), "", b"").0,
        200
    );
    assert_eq!(
        control.calls(),
        vec![
            Call::Pause(A),
            Call::Resume(A),
            Call::Remove(A, true),
            Call::Remove(InfoHash([0xbb; 20]), false),
        ]
    );
    assert_eq!(get(&api, "/torrents").1, "[]");
}

#[test]
fn refusals_map_to_statuses() {
    let api = Api::new(fake(), None);
    let unknown = hex(InfoHash([0x11; 20]));
    let failing = hex(InfoHash([0xee; 20]));
    for (method, target, want) in [
        ("GET", format!("/torrents/{unknown}"), 404),
        ("POST", format!("/torrents/{unknown}/pause"), 404),
        ("POST", format!("/torrents/{unknown}/resume"), 404),
        ("DELETE", format!("/torrents/{unknown}"), 404),
        ("GET", format!("/torrents/{failing}"), 500),
        ("POST", format!("/torrents/{failing}/pause"), 500),
    ] {
        let (code, body) = call(&api, method, &target, "", b"");
        assert_eq!(code, want, "{method} {target}: {body}");
    }
    let (_, body) = get(&api, &format!("/torrents/{failing}"));
    assert_eq!(error_of(&body), "disk on fire");
    for (r, want) in [
        (Refusal::Unknown(A), 404),
        (Refusal::Exists(A), 409),
        (
            Refusal::Clash {
                path: "/x".into(),
                other: A,
            },
            409,
        ),
        (Refusal::BadTorrent("x".into()), 400),
        (Refusal::OutsideData("..".into()), 400),
        (Refusal::Failed("x".into()), 500),
    ] {
        assert_eq!(refusal_status(&r).code, want, "{r:?}");
        assert_eq!(ApiError::Refused(r).response().status.code, want);
    }
}

#[test]
fn unknown_routes_methods_and_hashes() {
    let api = Api::new(fake(), None);
    let a = hex(A);
    for (method, target, want, allow) in [
        ("GET", "/".to_string(), 404, None),
        ("GET", "/torrentsx".into(), 404, None),
        ("GET", format!("/torrents/{a}/files"), 404, None),
        ("GET", format!("/torrents/{a}/pause"), 405, Some("POST")),
        ("PUT", "/torrents".into(), 405, Some("GET, POST")),
        ("POST", format!("/torrents/{a}"), 405, Some("GET, DELETE")),
        ("POST", "/metrics".into(), 405, Some("GET")),
        ("GET", "/torrents/abc".into(), 400, None),
        ("GET", format!("/torrents/{}", "zz".repeat(20)), 400, None),
        ("DELETE", format!("/torrents/{a}0"), 400, None),
        ("POST", "/torrents/%41/pause".into(), 400, None),
    ] {
        let head = format!("{method} {target} HTTP/1.1\r\n\r\n");
        let r = api.handle(head.as_bytes(), b"");
        assert_eq!(r.status.code, want, "{method} {target}");
        let got = r.headers.iter().find(|(n, _)| *n == "Allow");
        assert_eq!(got.map(|(_, v)| v.as_str()), allow, "{method} {target}");
        assert_eq!(r.content_type, JSON);
    }
    let r = api.handle(b"GARBAGE\r\n\r\n", b"");
    assert_eq!(r.status.code, 400);
}

#[test]
fn the_token_rule() {
    let api = Api::new(fake(), Some("s3cret-token"));
    for (headers, want) in [
        ("", 401),
        ("Authorization: Bearer wrong\r\n", 401),
        ("Authorization: Bearer s3cret-toke\r\n", 401),
        ("Authorization: Bearer s3cret-tokenX\r\n", 401),
        ("Authorization: Basic czNjcmV0LXRva2Vu\r\n", 401),
        ("Authorization: Bearer s3cret-token\r\n", 200),
        ("authorization: bearer s3cret-token\r\n", 200),
    ] {
        let (code, body) = call(&api, "GET", "/torrents", headers, b"");
        assert_eq!(code, want, "{headers:?}: {body}");
        let (code, _) = call(&api, "GET", "/metrics", headers, b"");
        assert_eq!(code, want, "{headers:?} /metrics");
    }
    // Unknown paths are not told apart from known ones without the token.
    assert_eq!(call(&api, "GET", "/nope", "", b"").0, 401);
    let r = api.handle(b"GET /torrents HTTP/1.1\r\n\r\n", b"");
    assert!(r.headers.contains(&("WWW-Authenticate", "Bearer".into())));
    // Without a token configured, none is needed.
    assert_eq!(get(&Api::new(fake(), None), "/torrents").0, 200);
}

#[test]
fn token_comparison() {
    let want: [u8; 20] = Sha1::digest(b"abc").into();
    assert!(same_token(b"abc", &want));
    for other in [&b""[..], b"ab", b"abd", b"abcd", b"ABC"] {
        assert!(!same_token(other, &want), "{other:?}");
    }
}

#[test]
fn start_rule() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:6880".parse().unwrap();
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:0".parse().unwrap();
    assert!(check_start(loopback, None).is_ok());
    assert!(check_start(v6, None).is_ok());
    assert!(check_start(mapped, None).is_ok());
    assert!(check_start(any, Some("t")).is_ok());
    assert!(matches!(check_start(any, None), Err(StartError::NeedsToken(a)) if a == any));
    assert!(matches!(
        check_start("[::]:1".parse().unwrap(), None),
        Err(StartError::NeedsToken(_))
    ));
    for bad in ["", "a b", "a\nb"] {
        assert!(matches!(
            check_start(loopback, Some(bad)),
            Err(StartError::BadToken)
        ));
    }
    let e = serve_api(any, None, fake()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<StartError>());
    assert!(matches!(inner, Some(StartError::NeedsToken(_))), "{e}");
}

#[test]
fn metrics_route() {
    let api = Api::new(fake(), None);
    let head = b"GET /metrics HTTP/1.1\r\n\r\n";
    let r = api.handle(head, b"");
    assert_eq!(r.status.code, 200);
    assert_eq!(r.content_type, metrics::CONTENT_TYPE);
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("shoal_peers 2\n"), "{text}");
    assert!(text.contains(&format!("info_hash=\"{}\",name=\"alpha\"", hex(A))));
}

#[test]
fn a_panicking_manager_costs_one_request() {
    struct Panics;
    impl Control for Panics {
        fn list(&self) -> Vec<TorrentStatus> {
            panic!("bug")
        }
        fn detail(&self, h: &InfoHash) -> Result<Detail, Refusal> {
            Err(Refusal::Unknown(*h))
        }
        fn add(&self, _: Source, _: Option<PathBuf>) -> Result<InfoHash, Refusal> {
            Err(Refusal::Failed("no".into()))
        }
        fn remove(&self, h: &InfoHash, _: bool) -> Result<(), Refusal> {
            Err(Refusal::Unknown(*h))
        }
        fn pause(&self, h: &InfoHash) -> Result<(), Refusal> {
            Err(Refusal::Unknown(*h))
        }
        fn resume(&self, h: &InfoHash) -> Result<(), Refusal> {
            Err(Refusal::Unknown(*h))
        }
        fn metrics(&self) -> Metrics {
            Metrics {
                torrents: vec![],
                session: Counters::default(),
                peers: 0,
                dht_nodes: None,
            }
        }
    }
    crate::util::testutil::within(|| {
        let server = serve_api("127.0.0.1:0".parse().unwrap(), None, Arc::new(Panics)).unwrap();
        let addr = server.local_addr();
        let exchange = |req: &[u8]| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(req).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let r = exchange(b"GET /torrents HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
        assert!(r.ends_with("{\"error\":\"internal error\"}"), "{r}");
        let r = exchange(b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(server.stop());
    });
}
