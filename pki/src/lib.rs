//! Certificates, revocation and invitation tokens for meshd. Pure: no I/O beyond what the caller hands in.
