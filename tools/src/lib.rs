//! Load generation and NG client tools.
