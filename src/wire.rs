//! Peer wire messages (placeholder, being written).
