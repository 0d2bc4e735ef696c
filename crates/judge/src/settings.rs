//! The judge's knobs, checked once so that the statistics never see a value they cannot use.

/// How sure and how large a difference must be before the judge calls it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    confidence: f64,
    tolerance: f64,
    max_error_ratio: f64,
    min_samples: usize,
    min_requests: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("confidence must be between 0.5 and 1 (exclusive), got {0}")]
    Confidence(f64),
    #[error("tolerance must be a finite number of at least 0, got {0}")]
    Tolerance(f64),
    #[error("maxErrorRatio must be greater than 1, got {0}")]
    MaxErrorRatio(f64),
    #[error("minSamples and minRequests must be at least 1")]
    Minimum,
}

impl Default for Settings {
    /// 95 % confidence; a shift of 10 % of the typical value; errors up to 1.5 times the
    /// primary's; 10 samples and 100 requests per side before anything is concluded.
    fn default() -> Self {
        Settings {
            confidence: 0.95,
            tolerance: 0.1,
            max_error_ratio: 1.5,
            min_samples: 10,
            min_requests: 100,
        }
    }
}

impl Settings {
    pub fn new(
        confidence: f64,
        tolerance: f64,
        max_error_ratio: f64,
        min_samples: usize,
        min_requests: u64,
    ) -> Result<Self, SettingsError> {
        if !(confidence > 0.5 && confidence < 1.0) {
            return Err(SettingsError::Confidence(confidence));
        }
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(SettingsError::Tolerance(tolerance));
        }
        if !(max_error_ratio.is_finite() && max_error_ratio > 1.0) {
            return Err(SettingsError::MaxErrorRatio(max_error_ratio));
        }
        if min_samples == 0 || min_requests == 0 {
            return Err(SettingsError::Minimum);
        }
        Ok(Settings {
            confidence,
            tolerance,
            max_error_ratio,
            min_samples,
            min_requests,
        })
    }

    /// The same settings at another confidence, kept within the range `new` accepts (a
    /// sequential correction may ask for more than the statistics can resolve).
    pub fn with_confidence(&self, confidence: f64) -> Self {
        let confidence = if confidence.is_finite() {
            confidence.clamp(0.5 + f64::EPSILON, 1.0 - 1e-12)
        } else {
            self.confidence
        };
        Settings {
            confidence,
            ..*self
        }
    }

    /// The confidence level of every interval and test (e.g. 0.95).
    pub fn confidence(&self) -> f64 {
        self.confidence
    }

    /// The smallest shift of a continuous metric that counts, relative to the mean of the two
    /// sides' medians (0.1 = 10 %): the effect-size gate that keeps a significant but negligible
    /// change from failing a canary. Relative to both sides rather than the primary alone so that
    /// swapping the sides mirrors the verdict exactly.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The canary's error rate, as a multiple of the primary's, from which a significant increase
    /// fails the canary; and the bound a pass must rule out.
    pub fn max_error_ratio(&self) -> f64 {
        self.max_error_ratio
    }

    pub fn min_samples(&self) -> usize {
        self.min_samples
    }

    pub fn min_requests(&self) -> u64 {
        self.min_requests
    }
}

#[cfg(test)]
mod tests {
    use super::{Settings, SettingsError};

    #[test]
    fn refuses_what_the_statistics_cannot_use() {
        assert_eq!(
            Settings::new(1.0, 0.1, 1.5, 1, 1),
            Err(SettingsError::Confidence(1.0))
        );
        assert!(Settings::new(f64::NAN, 0.1, 1.5, 1, 1).is_err());
        assert!(Settings::new(0.95, -0.1, 1.5, 1, 1).is_err());
        assert!(Settings::new(0.95, 0.1, 1.0, 1, 1).is_err());
        assert!(Settings::new(0.95, 0.1, 1.5, 0, 1).is_err());
        assert!(Settings::new(0.95, 0.1, 1.5, 1, 1).is_ok());
    }
}
