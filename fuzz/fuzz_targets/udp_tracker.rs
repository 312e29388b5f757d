//! BEP 15 datagrams in both directions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::udp_tracker::*;

fuzz_target!(|data: &[u8]| {
    let tid = data.get(4..8).map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
    let _ = ConnectRequest::decode(data);
    let _ = ConnectResponse::decode(data, tid);
    let _ = AnnounceRequest::decode(data);
    let _ = AnnounceResponse::decode(data, tid, Family::V4);
    let _ = AnnounceResponse::decode(data, tid, Family::V6);
    let _ = ScrapeRequest::decode(data);
    let _ = ScrapeResponse::decode(data, tid, data.len() % 80);
    let _ = ErrorResponse::decode(data, tid);
});
