//! The orchestrator driven in-process by fake peers that speak events and
//! commands over the same channels as real peer threads (no sockets for
//! the protocol, no spawned binary): honest peers in endgame, a liar, a
//! peer that chokes and unchokes in a loop, and a dead hasher.

use super::*;
use crate::net::peer::{BlockData, Encryption};
use crate::proto::bencode::Owned;
use crate::util::testutil::{within, TempDir};
use sha1::{Digest, Sha1};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;

const PIECE: u32 = 16 * 1024;

struct Fixture {
    meta: Arc<Metainfo>,
    data: Arc<Vec<u8>>,
    dir: TempDir,
}

/// A single-file torrent of `pieces` one-block pieces of known bytes.
fn fixture(tag: &str, pieces: u32) -> Fixture {
    let data: Vec<u8> = (0..pieces * PIECE).map(|i| (i * 7 % 251) as u8).collect();
    let hashes: Vec<u8> = data
        .chunks(PIECE as usize)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    let info = Owned::dict()
        .insert("length", i64::from(pieces * PIECE))
        .insert("name", "t.bin")
        .insert("piece length", i64::from(PIECE))
        .insert("pieces", hashes);
    let bytes = Owned::dict().insert("info", info).encode();
    Fixture {
        meta: Arc::new(Metainfo::from_bytes(&bytes).unwrap()),
        data: Arc::new(data),
        dir: TempDir::new(&format!("engine-{tag}")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    /// Answers every request with zeros.
    Liar,
    /// Chokes (voiding our requests) and unchokes again after every batch
    /// of requests, answering only the first block of each.
    ChokeCycler,
    /// Drops our first request without a word and answers the rest, as
    /// Transmission does with one past its queue.
    Skipper,
    /// BEP 6: rejects the first request of every batch the first time it
    /// is asked for.
    Rejecter,
    /// BEP 6: never unchokes us, but allows every piece fast.
    AllowsFast,
}

/// A fake peer with every piece, behaving as told; counts the blocks we
/// ask it for.
struct Fake {
    addr: SocketAddr,
    behaviour: Behaviour,
    asked: Arc<AtomicUsize>,
}

impl Fake {
    fn new(ip: u8, behaviour: Behaviour) -> Fake {
        Fake {
            addr: SocketAddr::from(([10, 0, 0, ip], 6881)),
            behaviour,
            asked: Arc::default(),
        }
    }

    /// The peer's thread: what `peer::run_outbound` would be.
    fn run(
        &self,
        data: Arc<Vec<u8>>,
    ) -> impl FnOnce(PeerKey, Settings, Receiver<Command>, Sender<Event>) + Send + 'static {
        let (behaviour, asked, id) = (self.behaviour, self.asked.clone(), self.addr.ip());
        move |peer, settings, commands, events| {
            // A real socket only so the orchestrator has one to shut down.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let socket = Stream::Tcp(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            let _other_end = listener.accept().unwrap();
            let mut peer_id = [0u8; 20];
            peer_id[..4].copy_from_slice(&id.to_string().as_bytes()[..4]);
            peer_id[19] = peer as u8;
            let fast = matches!(behaviour, Behaviour::Rejecter | Behaviour::AllowsFast);
            let num_pieces = *settings.num_pieces.get().unwrap();
            let mut hello = vec![
                Event::Connected {
                    peer,
                    id: peer_id,
                    extended: false,
                    fast,
                    dht: false,
                    socket,
                },
                Event::Bitfield(peer, Bitfield::full(num_pieces)),
            ];
            if behaviour == Behaviour::AllowsFast {
                hello.extend((0..num_pieces).map(|i| Event::AllowedFast(peer, i)));
            } else {
                hello.push(Event::Unchoke(peer));
            }
            for e in hello {
                let _ = events.send(e);
            }
            let mut skipped = false;
            let mut rejected = HashSet::new();
            for cmd in commands {
                let Command::Requests(blocks) = cmd else {
                    continue;
                };
                asked.fetch_add(blocks.len(), Ordering::SeqCst);
                let answer: Vec<&Block> = match behaviour {
                    Behaviour::ChokeCycler => blocks.iter().take(1).collect(),
                    Behaviour::Skipper if !skipped => {
                        skipped = true;
                        blocks.iter().skip(1).collect()
                    }
                    Behaviour::Rejecter if rejected.insert(blocks[0]) => {
                        let b = blocks[0];
                        let (i, begin, len) = (b.piece.get(), b.begin, b.len);
                        let _ = events.send(Event::Rejected(peer, i, begin, len));
                        blocks.iter().skip(1).collect()
                    }
                    _ => blocks.iter().collect(),
                };
                let blocks = answer
                    .into_iter()
                    .map(|b| {
                        let at = (u64::from(b.piece.get()) * u64::from(PIECE)) as usize
                            + b.begin as usize;
                        BlockData {
                            piece: b.piece.get(),
                            begin: b.begin,
                            data: match behaviour {
                                Behaviour::Liar => vec![0; b.len as usize],
                                _ => data[at..at + b.len as usize].to_vec(),
                            }
                            .into(),
                        }
                    })
                    .collect();
                let _ = events.send(Event::Blocks { peer, blocks });
                if behaviour == Behaviour::ChokeCycler {
                    let _ = events.send(Event::Choke(peer));
                    let _ = events.send(Event::Unchoke(peer));
                }
            }
            let _ = events.send(Event::Closed {
                peer,
                reason: CloseReason::Closed,
            });
        }
    }
}

/// Runs a download of `f` from `fakes` with `hasher` (and the timeout,
/// if given); returns how it ended and the notes.
fn download(
    f: &Fixture,
    fakes: &[Fake],
    hasher: Option<Hasher>,
    timeout: Option<Duration>,
) -> (Summary, Vec<Note>) {
    let session = Session::new(None, Encryption::Prefer, None).unwrap();
    let mut opts = Options::new(f.dir.0.clone());
    opts.timeout = timeout;
    // Only what each test is about may end a stall: never the peer timeout.
    opts.peer_timeout = Duration::from_secs(3600);
    let (storage, have) = open_storage(&f.meta, &opts, &|| false).unwrap();
    let hasher = hasher.unwrap_or_else(|| Hasher::spawn(storage.reader()).unwrap());
    let mut notes = Vec::new();
    let mut sink = |n| notes.push(n);
    let swarm = Swarm::new(&session, f.meta.info_hash, &opts, None);
    let mut o = Orchestrator::new(
        &session,
        f.meta.clone(),
        opts,
        storage,
        have,
        hasher,
        swarm,
        &mut sink,
    );
    for fake in fakes {
        o.start_peer(fake.addr, fake.run(f.data.clone()));
    }
    let result = o.run();
    o.shutdown();
    let summary = Summary {
        complete: o.picker.is_complete(),
        downloaded: o.swarm.counters.downloaded.load(Ordering::Relaxed),
        web_seed_bytes: o.web.bytes,
        uploaded: 0,
        elapsed: Duration::ZERO,
        stopped: result.err(),
        idle: false,
    };
    drop(o);
    (summary, notes)
}

fn assert_on_disk(f: &Fixture) {
    let got = std::fs::read(f.dir.0.join("t.bin")).unwrap();
    assert!(got == *f.data, "the data on disk is the torrent's");
}

#[test]
fn three_honest_peers_finish_through_endgame() {
    within(|| {
        let f = fixture("endgame", 48);
        let fakes = [
            Fake::new(1, Behaviour::Honest),
            Fake::new(2, Behaviour::Honest),
            Fake::new(3, Behaviour::Honest),
        ];
        let (summary, _) = download(&f, &fakes, None, None);
        assert!(summary.complete, "{:?}", summary.stopped);
        assert!(summary.stopped.is_none());
        assert_on_disk(&f);
        let asked: usize = fakes.iter().map(|p| p.asked.load(Ordering::SeqCst)).sum();
        // Endgame duplicates are few: each block asked of 3 peers at most.
        assert!((48..=3 * 48).contains(&asked), "{asked} blocks asked");
    });
}

/// The liar is the only source, so it surely fails three pieces: it is
/// banned having been asked for a few blocks only, and the download then
/// times out with nothing from it on disk.
#[test]
fn a_liar_is_banned_on_probation() {
    within(|| {
        let f = fixture("liar", 64);
        let fakes = [Fake::new(1, Behaviour::Liar)];
        let (summary, notes) = download(&f, &fakes, None, Some(Duration::from_secs(2)));
        assert!(!summary.complete);
        assert!(
            matches!(
                summary.stopped,
                Some(TorrentError::TimedOut { have: 0, .. })
            ),
            "{:?}",
            summary.stopped
        );
        let liar = fakes[0].asked.load(Ordering::SeqCst);
        // Probation: at most 2 pieces in doubt at a time, so 3 strikes
        // cost at most a few pieces, never a pipeline's worth.
        assert!(liar <= 8, "the liar was asked for {liar} blocks");
        assert!(notes.iter().any(|n| matches!(n, Note::PieceFailed { .. })));
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, Note::PeerBanned { who, .. } if who.starts_with("10.0.0.1"))),
            "{notes:?}"
        );
    });
}

#[test]
fn a_choke_storm_does_not_stall_the_download() {
    within(|| {
        let f = fixture("chokes", 32);
        let fakes = [Fake::new(1, Behaviour::ChokeCycler)];
        let (summary, _) = download(&f, &fakes, None, None);
        assert!(summary.complete, "{:?}", summary.stopped);
        assert_on_disk(&f);
    });
}

/// Regression (issue 9): with the hasher gone, the torrent stops with an
/// error instead of spinning on a dead channel or waiting forever.
#[test]
fn a_dead_hasher_stops_the_torrent() {
    within(|| {
        let f = fixture("hasher", 8);
        let dead = Hasher::spawn_with(|_, _| panic!("hasher bug"), |_: &[_]| {}).unwrap();
        let piece = crate::proto::geometry::Geometry::new(1, [(1, false)])
            .unwrap()
            .piece(0)
            .unwrap();
        dead.hash(piece, 1);
        assert!(dead.results().recv().is_err(), "the hasher died");
        let fakes = [Fake::new(1, Behaviour::Honest)];
        let (summary, _) = download(&f, &fakes, Some(dead), None);
        assert!(!summary.complete);
        assert!(matches!(summary.stopped, Some(TorrentError::HasherStopped)));
    });
}

/// Regression (issue 10): a request the peer dropped silently is asked
/// again once later ones are answered, not after the peer timeout (an
/// hour here, so without it the test's deadline fails).
#[test]
fn a_skipped_request_is_asked_again() {
    within(|| {
        let f = fixture("skipped", 160);
        let fakes = [Fake::new(1, Behaviour::Skipper)];
        let (summary, _) = download(&f, &fakes, None, None);
        assert!(summary.complete, "{:?}", summary.stopped);
        assert_on_disk(&f);
    });
}

/// BEP 6: a rejected request is open again at once (fewer blocks than
/// the skip gap, so only the reject can tell).
#[test]
fn rejected_requests_are_asked_again() {
    within(|| {
        let f = fixture("rejects", 32);
        let fakes = [Fake::new(1, Behaviour::Rejecter)];
        let (summary, _) = download(&f, &fakes, None, None);
        assert!(summary.complete, "{:?}", summary.stopped);
        assert_on_disk(&f);
    });
}

/// BEP 6: a peer that never unchokes us but allows its pieces fast serves
/// the whole torrent.
#[test]
fn allowed_fast_pieces_are_fetched_while_choked() {
    within(|| {
        let f = fixture("allowed-fast", 12);
        let fakes = [Fake::new(1, Behaviour::AllowsFast)];
        let (summary, _) = download(&f, &fakes, None, None);
        assert!(summary.complete, "{:?}", summary.stopped);
        assert_on_disk(&f);
    });
}

/// BEP 27: a private torrent never uses the session's DHT node (no
/// lookups, no reserved bit, no `PORT`); a public one does.
#[test]
fn the_dht_is_off_for_private_torrents() {
    let config = crate::net::dht::Config::default(); // no bootstrap: silent
    let session = Session::new(None, Encryption::Prefer, Some(config)).unwrap();
    let public = fixture("dht-public", 1);
    let lookups = dht::Lookups::new(&session, public.meta.private);
    assert!(lookups.is_on());
    assert_eq!(lookups.port(), session.dht().map(|d| d.port));
    let mut private = (*public.meta).clone();
    private.private = true;
    assert!(!dht::Lookups::new(&session, private.private).is_on());
    let off = Session::new(None, Encryption::Prefer, None).unwrap();
    assert!(!dht::Lookups::new(&off, public.meta.private).is_on());
}
