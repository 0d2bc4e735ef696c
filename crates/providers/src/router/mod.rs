//! Routers: apply routes, set and read weights.
