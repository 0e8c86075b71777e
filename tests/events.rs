//! Tests of events (to be written).
