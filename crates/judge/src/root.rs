//! The crossing point of a non-increasing step function, by bisection.

/// Where `f` (non-increasing on `[low, high]`) crosses zero, or the end of the interval it does not
/// cross inside. Bisection rather than a faster method because `f` is a step function of ranks:
/// only bracketing is guaranteed to converge on it.
pub fn crossing(f: impl Fn(f64) -> f64, mut low: f64, mut high: f64) -> f64 {
    if f(low) <= 0.0 {
        return low;
    }
    if f(high) >= 0.0 {
        return high;
    }
    // 200 halvings reach the resolution of an f64 from any finite interval.
    for _ in 0..200 {
        let middle = low + (high - low) / 2.0;
        if middle <= low || middle >= high {
            break;
        }
        let value = f(middle);
        if value == 0.0 {
            return middle;
        }
        if value > 0.0 {
            low = middle;
        } else {
            high = middle;
        }
    }
    low + (high - low) / 2.0
}

#[cfg(test)]
mod tests {
    use super::crossing;

    #[test]
    fn finds_the_step_of_a_step_function() {
        let step = |x: f64| if x <= 3.0 { 1.0 } else { -1.0 };
        assert!((crossing(step, 0.0, 10.0) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn returns_an_end_when_there_is_no_crossing_inside() {
        assert_eq!(crossing(|_| -1.0, 0.0, 10.0), 0.0);
        assert_eq!(crossing(|_| 1.0, 0.0, 10.0), 10.0);
    }

    #[test]
    fn returns_an_exact_zero_at_once() {
        assert_eq!(crossing(|x| 5.0 - x, 0.0, 10.0), 5.0);
    }
}
