//! Tests of deploy (to be written).
