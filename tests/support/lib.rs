//! Helpers shared by the end-to-end suites: starting real peers on loopback and
//! waiting for them, bounded in time.
