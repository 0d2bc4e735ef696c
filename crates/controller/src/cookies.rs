//! Random session-affinity cookie values for the core, which has no randomness of its own.

use flagger_core::FreshCookies;

/// Letters per cookie value, as Flagger's.
const LEN: usize = 10;
const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Two fresh values drawn from the OS random source (through UUID v4, already a dependency).
/// Most ticks do not use them; drawing them is cheaper than asking the core first.
pub fn fresh() -> FreshCookies {
    FreshCookies {
        canary: letters(),
        primary: letters(),
    }
}

fn letters() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // 256 is not a multiple of 52: the first letters are a little likelier, which leaves far more
    // than enough unpredictability for a cookie that only selects a version.
    bytes
        .iter()
        .take(LEN)
        .map(|b| char::from(LETTERS[usize::from(*b) % LETTERS.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ten_ascii_letters_that_differ_between_draws() {
        let a = super::fresh();
        assert_eq!(a.canary.len(), 10);
        assert!(a.canary.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_ne!(a.canary, a.primary);
    }
}
