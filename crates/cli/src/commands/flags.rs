//! Parsers of numeric flags that reject out-of-range values with the flag's own message
//! (clap names the flag: `invalid value '-1' for '--temperature <T>': must be > 0`). Numeric
//! flags accept a leading minus (`allow_negative_numbers`), so that `--temperature -1` reaches
//! these checks instead of being read as another flag.

/// A count of at least 1.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("expected a whole number of at least 1, got `{s}`"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// A finite number above 0.
pub fn positive(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| format!("expected a number, got `{s}`"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err("must be a finite number > 0".into());
    }
    Ok(v)
}

/// A probability mass in (0, 1].
pub fn probability(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|_| format!("expected a number, got `{s}`"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err("must be in (0, 1]".into());
    }
    Ok(v)
}

/// A non-negative whole number (a seed, a top-k where 0 means off).
pub fn whole<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("expected a non-negative whole number, got `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-2").is_err());
        assert!(positive("-1").unwrap_err().contains("> 0"));
        assert!(positive("nan").is_err());
        assert_eq!(probability("1"), Ok(1.0));
        assert!(probability("1.5").is_err());
        assert!(whole::<u64>("-1").is_err());
    }
}
