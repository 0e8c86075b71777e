//! Tests of rollback (to be written).
