//! flagger.app/v1beta1 API types.
