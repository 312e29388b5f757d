//! Many torrents' announcers on a few threads, for `shoal serve`: a
//! thousand idle torrents must not cost a thousand announce threads.
//!
//! Owns: a scheduler thread that keeps each announcer (the same
//! [`Session`] state machine as the announce thread) and when it is due,
//! and [`WORKERS`] threads that carry out due rounds and `stopped`
//! announces, one announcer at a time each. An announcer is either at
//! home with the scheduler or out on a worker, never both; commands that
//! come while it is out are taken in when it is back.

use super::{Config, Counters, Handle, Report, Session};
use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender, TryRecvError};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Announces in progress at once at most. A tracker that hangs holds a
/// worker for its request timeout; the others go on.
pub const WORKERS: usize = 4;

/// Once the pool is dropped, how long announces still queued are carried
/// out; those not begun by then are dropped unsent. Without it, a tracker
/// that hangs made a shutdown wait for its timeout once per torrent
/// ([`WORKERS`] at a time): minutes for a hundred torrents.
const QUIT_BUDGET: Duration = super::STOP_TIMEOUT;

pub type Id = u64;

pub(super) enum Msg {
    Add(Id, Box<Session>, Sender<()>),
    /// The announcer has commands waiting.
    Poke(Id),
    /// Back from a worker: its next round is due then (`None`: it has
    /// stopped, or must).
    Back(Id, Box<Session>, Option<Instant>),
    Ended(Id),
}

enum Job {
    Round(Id, Box<Session>),
    Stop(Id, Box<Session>),
}

/// The announcers of many torrents; dropping it stops them (`stopped`
/// sent within [`QUIT_BUDGET`]) and ends its threads (after the work in
/// hand, so after at most one request timeout more).
pub struct Pool {
    msgs: Sender<Msg>,
    next_id: std::sync::atomic::AtomicU64,
    threads: Vec<JoinHandle<()>>,
    /// Closing it tells the scheduler to end.
    quit: Option<Sender<()>>,
    /// When the workers stop carrying out jobs: set on drop.
    give_up: Arc<OnceLock<Instant>>,
    pub(super) quit_budget: Duration,
}

impl Pool {
    pub fn start() -> std::io::Result<Pool> {
        let (msgs, inbox) = unbounded();
        let (jobs_tx, jobs) = unbounded::<Job>();
        let (quit, quit_rx) = bounded::<()>(0);
        let give_up: Arc<OnceLock<Instant>> = Arc::default();
        let mut threads = Vec::with_capacity(WORKERS + 1);
        for i in 0..WORKERS {
            let jobs = jobs.clone();
            let back = msgs.clone();
            let give_up = Arc::clone(&give_up);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("announce-{i}"))
                    .spawn(move || work(&jobs, &back, &give_up))?,
            );
        }
        threads.push(
            std::thread::Builder::new()
                .name("announce-pool".into())
                .spawn(move || Scheduler::default().run(&inbox, &jobs_tx, &quit_rx))?,
        );
        Ok(Pool {
            msgs,
            next_id: Default::default(),
            threads,
            quit: Some(quit),
            give_up,
            quit_budget: QUIT_BUDGET,
        })
    }

    /// Adds one torrent's announcer: it announces `started` at once, as a
    /// thread of its own would ([`super::spawn`]), and ends after
    /// [`Command::Stop`].
    pub fn add(
        &self,
        config: Config,
        counters: Arc<Counters>,
        report: Box<dyn Fn(Report) + Send>,
    ) -> Handle {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (commands, rx) = unbounded();
        let (ended_tx, ended) = bounded::<()>(0);
        let session = Box::new(Session::new(config, counters, rx, report));
        let _ = self.msgs.send(Msg::Add(id, session, ended_tx));
        Handle {
            commands,
            poke: Some((self.msgs.clone(), id)),
            ended,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.give_up.set(Instant::now() + self.quit_budget);
        drop(self.quit.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Carries out jobs until the queue closes; past `give_up`, sends each
/// announcer home as ended instead.
fn work(jobs: &Receiver<Job>, back: &Sender<Msg>, give_up: &OnceLock<Instant>) {
    for job in jobs {
        let late = give_up.get().is_some_and(|at| Instant::now() >= *at);
        let msg = match job {
            Job::Round(id, session) if late => Msg::Back(id, session, None),
            Job::Stop(id, _) if late => Msg::Ended(id),
            Job::Round(id, mut session) => {
                let next = session.due_round();
                Msg::Back(id, session, next)
            }
            Job::Stop(id, session) => {
                session.stop();
                Msg::Ended(id)
            }
        };
        let _ = back.send(msg);
    }
}

struct Entry {
    /// `None` while out on a worker.
    session: Option<Box<Session>>,
    /// When its next round is due (`None`: never, it has no trackers).
    next: Option<Instant>,
    /// Dropped when the announcer ends, which its handles see.
    _ended: Sender<()>,
    stopping: bool,
}

#[derive(Default)]
struct Scheduler {
    entries: HashMap<Id, Entry>,
    /// Due times, with stale ones (an entry re-planned or gone) skipped
    /// when they come up.
    due: BinaryHeap<Reverse<(Instant, Id)>>,
}

impl Scheduler {
    fn run(mut self, inbox: &Receiver<Msg>, jobs: &Sender<Job>, quit: &Receiver<()>) {
        let mut quit = quit.clone();
        let mut quitting = false;
        loop {
            let wake = self.due.peek().map(|Reverse((at, _))| *at);
            let timer = wake.map_or_else(never, crossbeam_channel::at);
            select! {
                recv(inbox) -> msg => match msg {
                    Ok(msg) => self.on_msg(msg, jobs),
                    Err(_) => return,
                },
                recv(quit) -> _ => {
                    // The pool is dropped: stop what is at home, and end
                    // once every announcer is back (the workers end when
                    // the job queue closes).
                    quit = never();
                    quitting = true;
                    let ids: Vec<Id> = self.entries.keys().copied().collect();
                    for id in ids {
                        self.stop(id, jobs);
                    }
                }
                recv(timer) -> _ => self.run_due(jobs),
            }
            if quitting && self.entries.is_empty() {
                return;
            }
        }
    }

    fn on_msg(&mut self, msg: Msg, jobs: &Sender<Job>) {
        match msg {
            Msg::Add(id, session, ended) => {
                let next = session.first_due();
                self.entries.insert(
                    id,
                    Entry {
                        session: Some(session),
                        next,
                        _ended: ended,
                        stopping: false,
                    },
                );
                self.plan(id);
            }
            Msg::Poke(id) => self.take_commands(id, jobs),
            Msg::Back(id, session, next) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    return;
                };
                e.session = Some(session);
                match next.filter(|_| !e.stopping) {
                    Some(at) => {
                        e.next = Some(at);
                        self.plan(id);
                        self.take_commands(id, jobs);
                    }
                    None => self.stop(id, jobs),
                }
            }
            Msg::Ended(id) => {
                self.entries.remove(&id);
            }
        }
    }

    /// Applies the commands waiting for an announcer at home.
    fn take_commands(&mut self, id: Id, jobs: &Sender<Job>) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(session) = e.session.as_mut() else {
            return; // out: looked at when it is back
        };
        let before = e.next;
        loop {
            match session.commands.try_recv() {
                Ok(c) => {
                    if !session.command(c, &mut e.next) {
                        e.stopping = true;
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    e.stopping = true;
                    break;
                }
            }
        }
        if e.stopping {
            self.stop(id, jobs);
        } else if e.next != before {
            self.plan(id);
        }
    }

    fn plan(&mut self, id: Id) {
        if let Some(at) = self.entries.get(&id).and_then(|e| e.next) {
            self.due.push(Reverse((at, id)));
        }
    }

    /// Sends an announcer at home out for its `stopped`; one that is out
    /// is stopped when it is back (its round sees the `Stop` command).
    fn stop(&mut self, id: Id, jobs: &Sender<Job>) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        e.stopping = true;
        if let Some(session) = e.session.take() {
            let _ = jobs.send(Job::Stop(id, session));
        }
    }

    fn run_due(&mut self, jobs: &Sender<Job>) {
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.next != Some(at) || e.stopping {
                continue; // re-planned since
            }
            if let Some(session) = e.session.take() {
                e.next = None;
                let _ = jobs.send(Job::Round(id, session));
            }
        }
    }
}
