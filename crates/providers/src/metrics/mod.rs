//! Metric providers: run a query, return one number.
