//! Notifiers: deliver one alert to a chat or webhook endpoint.
