//! Minimal HTTP/1.1 pieces (placeholder).
