//! Worker threads, command/event rings and the I/O shell around the engine.
