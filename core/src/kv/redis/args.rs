//! Reading arguments as Redis reads them: integers without a sign or zero in front, floats
//! without spaces or NaN, options in any case.

use paxkv_proto::client::RedisReply;

use super::error;

/// An integer as Redis accepts it: optional `-`, no `+`, no leading zero, no spaces, in range.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    if text == "-0" {
        return None;
    }
    text.parse().ok()
}

/// A float: no spaces, not NaN.
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

pub fn not_an_integer() -> RedisReply {
    error("ERR value is not an integer or out of range")
}

pub fn not_a_float() -> RedisReply {
    error("ERR value is not a valid float")
}

pub fn integer_arg(bytes: &[u8]) -> Result<i64, RedisReply> {
    parse_i64(bytes).ok_or_else(not_an_integer)
}

pub fn float_arg(bytes: &[u8]) -> Result<f64, RedisReply> {
    parse_f64(bytes).ok_or_else(not_a_float)
}

/// True if `arg` is the option `name` (any case).
pub fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

/// A float as Redis writes INCRBYFLOAT's result: plain decimal, no exponent, no trailing
/// zeros (`10.6`, `3`, `5000`).
pub fn format_float(value: f64) -> String {
    let text = format!("{value}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

/// An expiry given as a number of `unit_ms`, checked as Redis checks it for `command`:
/// positive and not overflowing. Returns milliseconds.
pub fn expiry_ms(bytes: &[u8], unit_ms: i64, command: &str) -> Result<i64, RedisReply> {
    let value = integer_arg(bytes)?;
    let invalid = || error(format!("ERR invalid expire time in '{command}' command"));
    if value <= 0 {
        return Err(invalid());
    }
    value.checked_mul(unit_ms).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_are_read_as_redis_reads_them() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b"+1"[..],
            b"01",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"-0",
            b"1.5",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(5000.0), "5000");
        assert_eq!(format_float(-0.25), "-0.25");
    }
}
