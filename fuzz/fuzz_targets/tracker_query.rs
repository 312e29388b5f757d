//! `shoal tracker`: announce and scrape query strings from clients.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::tracker_server::query;

fuzz_target!(|data: &[u8]| {
    let _ = query::parse_announce(data);
    let _ = query::parse_scrape(data);
});
