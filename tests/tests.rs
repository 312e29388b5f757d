//! Every integration test, in one binary (as ripgrep does): `tests/common`
//! is compiled once, and a helper no test uses is a warning. The modules
//! live in `tests/suite/`, out of reach of cargo's discovery of
//! `tests/*.rs`; `cargo test --test tests get::` runs one of them.

mod common;

#[path = "suite/api.rs"]
mod api;
#[path = "suite/bans.rs"]
mod bans;
#[path = "suite/bench_smoke.rs"]
mod bench_smoke;
#[path = "suite/dht.rs"]
mod dht;
#[path = "suite/fixtures.rs"]
mod fixtures;
#[path = "suite/fuzz.rs"]
mod fuzz;
#[path = "suite/get.rs"]
mod get;
#[path = "suite/interop.rs"]
mod interop;
#[path = "suite/interop_encryption.rs"]
mod interop_encryption;
#[path = "suite/interop_trackers.rs"]
mod interop_trackers;
#[path = "suite/interop_upload.rs"]
mod interop_upload;
#[path = "suite/layers.rs"]
mod layers;
#[path = "suite/limits.rs"]
mod limits;
#[path = "suite/lsd.rs"]
mod lsd;
#[path = "suite/magnet.rs"]
mod magnet;
#[path = "suite/matrix.rs"]
mod matrix;
#[path = "suite/rates.rs"]
mod rates;
#[path = "suite/reliability.rs"]
mod reliability;
#[path = "suite/select.rs"]
mod select;
#[path = "suite/serve.rs"]
mod serve;
#[path = "suite/swarm.rs"]
mod swarm;
#[path = "suite/trackers.rs"]
mod trackers;
#[path = "suite/upload.rs"]
mod upload;
#[path = "suite/utp.rs"]
mod utp;
#[path = "suite/web_seed.rs"]
mod web_seed;
