//! How figures are written for people: thousands grouped, latencies in milliseconds.

/// `1234567.8` as `1,234,568`.
pub fn grouped(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0.0 { format!("-{out}") } else { out }
}

/// Microseconds as milliseconds with three significant digits or more:
/// `0.0412`, `0.412`, `4.12`, `41.2`, `412`, `4,120`.
pub fn millis(micros: f64) -> String {
    let ms = micros / 1_000.0;
    match ms.abs() {
        0.0 => "0".to_owned(),
        m if m < 0.1 => format!("{ms:.4}"),
        m if m < 1.0 => format!("{ms:.3}"),
        m if m < 10.0 => format!("{ms:.2}"),
        m if m < 100.0 => format!("{ms:.1}"),
        _ => grouped(ms),
    }
}

/// A ratio as `1.23×`, or `–` when it cannot be formed.
pub fn ratio(numerator: f64, denominator: f64) -> String {
    if denominator > 0.0 && numerator.is_finite() && denominator.is_finite() {
        format!("{:.2}×", numerator / denominator)
    } else {
        "–".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(1234567.8), "1,234,568");
        assert_eq!(grouped(-4321.0), "-4,321");
    }

    #[test]
    fn milliseconds_keep_three_digits() {
        assert_eq!(millis(41.2), "0.0412");
        assert_eq!(millis(412.0), "0.412");
        assert_eq!(millis(4120.0), "4.12");
        assert_eq!(millis(41200.0), "41.2");
        assert_eq!(millis(4_120_000.0), "4,120");
    }

    #[test]
    fn ratios_need_a_denominator() {
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(ratio(3.0, 0.0), "–");
    }
}
