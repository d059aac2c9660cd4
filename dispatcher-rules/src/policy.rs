//! The values of a handler's policy: attempts, concurrency, backoff and
//! timeout.

/// `max_attempts`: total attempts per record, the first included.
pub fn check_max_attempts(n: u64) -> Result<(), String> {
    if n == 0 {
        return Err("`max_attempts` must be an integer of at least 1".to_owned());
    }
    if n > u64::from(u32::MAX) {
        return Err(format!("`max_attempts` is at most {}", u32::MAX));
    }
    Ok(())
}

/// `concurrency`: records of one handler running at once.
pub fn check_concurrency(n: u64) -> Result<(), String> {
    if n == 0 {
        return Err("`concurrency` must be an integer of at least 1".to_owned());
    }
    Ok(())
}

/// `timeout`: the limit of each attempt.
pub fn check_timeout(millis: u64) -> Result<(), String> {
    if millis == 0 {
        return Err("`timeout` must be longer than zero".to_owned());
    }
    Ok(())
}

/// The growth factor of an exponential backoff.
pub fn check_factor(factor: f64) -> Result<(), String> {
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err("`factor` must be at least 1.0".to_owned());
    }
    Ok(())
}

/// The jitter of an exponential backoff.
pub fn check_jitter(jitter: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&jitter) {
        return Err("`jitter` must be between 0.0 and 1.0".to_owned());
    }
    Ok(())
}

/// The bounds of an exponential backoff.
pub fn check_initial_max(initial_ms: u64, max_ms: u64) -> Result<(), String> {
    if initial_ms > max_ms {
        return Err(format!(
            "`initial` ({initial_ms} ms) is longer than `max` ({max_ms} ms)"
        ));
    }
    Ok(())
}

/// Every value of an exponential backoff, in the order the attribute lists
/// them; the first problem found.
pub fn check_exponential(
    initial_ms: u64,
    max_ms: u64,
    factor: f64,
    jitter: f64,
) -> Result<(), String> {
    check_initial_max(initial_ms, max_ms)?;
    check_factor(factor)?;
    check_jitter(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sensible_values_and_rejects_the_rest() {
        assert!(check_max_attempts(1).is_ok());
        assert!(check_max_attempts(0)
            .expect_err("zero")
            .contains("at least 1"));
        assert!(check_concurrency(0).is_err());
        assert!(check_timeout(0).is_err());
        assert!(check_exponential(100, 10_000, 2.0, 0.2).is_ok());
        assert!(check_exponential(100, 10, 2.0, 0.0)
            .expect_err("initial > max")
            .contains("longer than `max`"));
        assert!(check_exponential(100, 1000, 0.5, 0.0)
            .expect_err("factor")
            .contains("factor"));
        assert!(check_exponential(100, 1000, f64::NAN, 0.0).is_err());
        assert!(check_exponential(100, 1000, 2.0, 1.5)
            .expect_err("jitter")
            .contains("jitter"));
    }
}

/// `retry_topics`: the delays of the retry levels, in milliseconds: at
/// least one, each from 1 ms to 7 days, strictly ascending. On error, the
/// index of the offending delay and the message.
pub fn check_retry_delays(delays_ms: &[u64]) -> Result<(), (usize, String)> {
    const WEEK_MS: u64 = 7 * 24 * 3_600_000;
    if delays_ms.is_empty() {
        return Err((
            0,
            "`retry_topics` needs at least one delay, e.g. [\"1s\", \"30s\", \"5m\"]".to_owned(),
        ));
    }
    for (i, &d) in delays_ms.iter().enumerate() {
        if d == 0 || d > WEEK_MS {
            return Err((
                i,
                "a retry delay is from 1ms to 7 days (\"168h\")".to_owned(),
            ));
        }
        if i > 0 && d <= delays_ms[i - 1] {
            return Err((
                i,
                "retry delays must be strictly ascending: each level waits longer than the one before".to_owned(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod retry_tests {
    use super::check_retry_delays;

    #[test]
    fn retry_delays_are_ascending_non_empty_and_bounded() {
        assert!(check_retry_delays(&[1_000, 30_000, 300_000]).is_ok());
        assert_eq!(check_retry_delays(&[]).map_err(|e| e.0), Err(0));
        assert_eq!(check_retry_delays(&[1_000, 1_000]).map_err(|e| e.0), Err(1));
        assert_eq!(check_retry_delays(&[5_000, 0]).map_err(|e| e.0), Err(1));
        assert_eq!(
            check_retry_delays(&[8 * 24 * 3_600_000]).map_err(|e| e.0),
            Err(0)
        );
    }
}
