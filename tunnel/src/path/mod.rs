//! Paths: the ways a peer can be reached (local source address x remote endpoint), how each
//! is probed, and which one carries the peer's traffic.
