//! Piece bitfields (placeholder, being written).
