//! Zero-copy views over RTP, RTCP and the RFC 7983 first-byte demultiplexer.
#![forbid(unsafe_code)]
