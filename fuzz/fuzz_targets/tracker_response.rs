//! Tracker announce and scrape responses (HTTP bodies).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::metainfo::InfoHash;
use shoal::proto::tracker;

fuzz_target!(|data: &[u8]| {
    let _ = tracker::parse_response(data);
    let _ = tracker::parse_scrape(data, &InfoHash([0; 20]));
});
