//! Commands as clients send them: `*<n>\r\n` then `n` bulk strings `$<len>\r\n<bytes>\r\n`, or
//! an inline line of words (what a person types into `telnet`), split like Redis does (double
//! quotes with escapes, single quotes verbatim).

use super::{ARGUMENTS_MAX, ARGUMENT_BYTES_MAX, COMMAND_BYTES_MAX, INLINE_BYTES_MAX};

/// What the bytes at the front of a buffer hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command (its arguments; empty for a blank inline line, which Redis ignores) and
    /// how many bytes it took.
    Command {
        arguments: Vec<Vec<u8>>,
        used: usize,
    },
    /// Not all of it has arrived: nothing can be said before the buffer holds `needed` bytes.
    Incomplete { needed: usize },
}

/// A protocol error. Redis answers it and closes the connection: what follows can no longer
/// be told apart from what came before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: the command is larger than {COMMAND_BYTES_MAX} bytes")]
    CommandTooBig,
    #[error("Protocol error: a bulk string does not end with CRLF")]
    MissingCrlf,
}

/// Reads one command from the front of `buffer`.
pub fn parse_command(buffer: &[u8]) -> Result<Parsed, RespError> {
    match buffer.first() {
        None => Ok(Parsed::Incomplete { needed: 1 }),
        Some(b'*') => parse_multibulk(buffer),
        Some(_) => parse_inline(buffer),
    }
}

/// The line starting at `from` (without its CRLF) and where the next one starts, or None if
/// its end has not arrived. A line longer than `max` is an error as soon as that is known.
fn line(
    buffer: &[u8],
    from: usize,
    max: usize,
    too_long: RespError,
) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buffer[from.min(buffer.len())..];
    match rest.iter().position(|byte| *byte == b'\n') {
        Some(end) if end > max => Err(too_long),
        Some(end) => {
            let text = &rest[..end];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            Ok(Some((text, from + end + 1)))
        }
        None if rest.len() > max => Err(too_long),
        None => Ok(None),
    }
}

/// A decimal length as Redis reads it (an optional sign, digits only).
fn number(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_multibulk(buffer: &[u8]) -> Result<Parsed, RespError> {
    let header_max = 32;
    let Some((header, mut at)) = line(buffer, 1, header_max, RespError::InvalidMultibulkLength)?
    else {
        return Ok(Parsed::Incomplete {
            needed: buffer.len() + 1,
        });
    };
    let count = number(header).ok_or(RespError::InvalidMultibulkLength)?;
    if count > ARGUMENTS_MAX as i64 {
        return Err(RespError::InvalidMultibulkLength);
    }
    if count <= 0 {
        // `*0` and `*-1` are no command; Redis skips them.
        return Ok(Parsed::Command {
            arguments: Vec::new(),
            used: at,
        });
    }
    let mut arguments = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        let Some(&first) = buffer.get(at) else {
            return Ok(Parsed::Incomplete { needed: at + 1 });
        };
        if first != b'$' {
            return Err(RespError::ExpectedBulk(char::from(first)));
        }
        let Some((length, start)) = line(buffer, at + 1, header_max, RespError::InvalidBulkLength)?
        else {
            return Ok(Parsed::Incomplete {
                needed: buffer.len() + 1,
            });
        };
        let length = number(length)
            .filter(|length| (0..=ARGUMENT_BYTES_MAX as i64).contains(length))
            .ok_or(RespError::InvalidBulkLength)? as usize;
        let end = start + length;
        if end + 2 > COMMAND_BYTES_MAX {
            return Err(RespError::CommandTooBig);
        }
        if buffer.len() < end + 2 {
            return Ok(Parsed::Incomplete { needed: end + 2 });
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf);
        }
        arguments.push(buffer[start..end].to_vec());
        at = end + 2;
    }
    Ok(Parsed::Command {
        arguments,
        used: at,
    })
}

fn parse_inline(buffer: &[u8]) -> Result<Parsed, RespError> {
    let Some((text, used)) = line(buffer, 0, INLINE_BYTES_MAX, RespError::InlineTooBig)? else {
        return Ok(Parsed::Incomplete {
            needed: buffer.len() + 1,
        });
    };
    Ok(Parsed::Command {
        arguments: split_inline(text)?,
        used,
    })
}

/// Splits an inline line into words: spaces separate them; "double quotes" take the escapes
/// \n \r \t \b \a \\ \" and \xHH; 'single quotes' take \' only. A closing quote must be
/// followed by a space or the end.
fn split_inline(text: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let mut words = Vec::new();
    let mut at = 0;
    loop {
        while at < text.len() && text[at].is_ascii_whitespace() {
            at += 1;
        }
        if at == text.len() {
            return Ok(words);
        }
        let mut word = Vec::new();
        match text[at] {
            b'"' => {
                at += 1;
                loop {
                    let Some(&byte) = text.get(at) else {
                        return Err(RespError::UnbalancedQuotes);
                    };
                    at += 1;
                    match byte {
                        b'"' => break,
                        b'\\' => {
                            let Some(&escaped) = text.get(at) else {
                                return Err(RespError::UnbalancedQuotes);
                            };
                            at += 1;
                            let hex = |digit: Option<&u8>| {
                                digit.and_then(|digit| char::from(*digit).to_digit(16))
                            };
                            word.push(match escaped {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                b'x' => match (hex(text.get(at)), hex(text.get(at + 1))) {
                                    (Some(high), Some(low)) => {
                                        at += 2;
                                        (high * 16 + low) as u8
                                    }
                                    _ => b'x',
                                },
                                other => other,
                            });
                        }
                        other => word.push(other),
                    }
                }
            }
            b'\'' => {
                at += 1;
                loop {
                    let Some(&byte) = text.get(at) else {
                        return Err(RespError::UnbalancedQuotes);
                    };
                    at += 1;
                    match byte {
                        b'\'' => break,
                        b'\\' if text.get(at) == Some(&b'\'') => {
                            at += 1;
                            word.push(b'\'');
                        }
                        other => word.push(other),
                    }
                }
            }
            _ => {
                while at < text.len() && !text[at].is_ascii_whitespace() {
                    word.push(text[at]);
                    at += 1;
                }
                words.push(word);
                continue;
            }
        }
        // After a closing quote: a space or the end.
        if text.get(at).is_some_and(|byte| !byte.is_ascii_whitespace()) {
            return Err(RespError::UnbalancedQuotes);
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
        match parse_command(bytes) {
            Ok(Parsed::Command { arguments, used }) => (arguments, used),
            other => panic!("not a command: {other:?}"),
        }
    }

    fn words(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|item| item.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_multibulk_command_and_what_follows_it() {
        let bytes = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nx!\r\n*1\r\n$4\r\nPING\r\n";
        let (arguments, used) = command(bytes);
        assert_eq!(
            arguments,
            vec![b"SET".to_vec(), b"k".to_vec(), b"v\r\nx!".to_vec()]
        );
        assert_eq!(command(&bytes[used..]).0, words(&["PING"]));
    }

    #[test]
    fn every_prefix_of_a_command_is_incomplete_and_says_what_it_needs() {
        let bytes = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..bytes.len() {
            match parse_command(&bytes[..cut]) {
                Ok(Parsed::Incomplete { needed }) => {
                    assert!(
                        needed > cut && needed <= bytes.len(),
                        "cut {cut}: needs {needed}"
                    )
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert_eq!(command(bytes).1, bytes.len());
    }

    #[test]
    fn lengths_are_checked_before_anything_is_buffered() {
        let huge = format!("*1\r\n${}\r\n", ARGUMENT_BYTES_MAX + 1);
        assert_eq!(
            parse_command(huge.as_bytes()),
            Err(RespError::InvalidBulkLength)
        );
        let many = format!("*{}\r\n", ARGUMENTS_MAX + 1);
        assert_eq!(
            parse_command(many.as_bytes()),
            Err(RespError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_command(b"*2\r\n$-5\r\n"),
            Err(RespError::InvalidBulkLength)
        );
        assert_eq!(
            parse_command(b"*x\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_command(b"*1\r\n:5\r\n"),
            Err(RespError::ExpectedBulk(':'))
        );
        assert_eq!(
            parse_command(b"*1\r\n$1\r\nab\r\n"),
            Err(RespError::MissingCrlf)
        );
        // Many large arguments: refused once their sum passes the bound, not buffered.
        let mut big = b"*64\r\n".to_vec();
        let argument = vec![b'v'; ARGUMENT_BYTES_MAX];
        for _ in 0..20 {
            big.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
            big.extend_from_slice(&argument);
            big.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse_command(&big), Err(RespError::CommandTooBig));
        // A header line that never ends is refused once it is too long to be one.
        assert_eq!(
            parse_command(&[b'*'; 100]),
            Err(RespError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn inline_commands_split_like_redis() {
        assert_eq!(command(b"PING\r\n").0, words(&["PING"]));
        assert_eq!(command(b"  set  k   v \n").0, words(&["set", "k", "v"]));
        assert_eq!(
            command(b"SET k \"a b\\n\\x41\" 'it\\'s'\r\n").0,
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"a b\nA".to_vec(),
                b"it's".to_vec()
            ]
        );
        assert_eq!(command(b"\r\n").0, Vec::<Vec<u8>>::new());
        assert_eq!(
            parse_command(b"SET k \"open\r\n"),
            Err(RespError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_command(b"SET \"a\"b\r\n"),
            Err(RespError::UnbalancedQuotes)
        );
        let long = vec![b'a'; INLINE_BYTES_MAX + 1];
        assert_eq!(parse_command(&long), Err(RespError::InlineTooBig));
        assert_eq!(parse_command(b"PIN"), Ok(Parsed::Incomplete { needed: 4 }));
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 40) as usize;
            let alphabet = b"*$\r\n0123-x\" '\\:";
            let bytes: Vec<u8> = (0..length)
                .map(|i| alphabet[usize::from((state >> (i % 56)) as u8) % alphabet.len()])
                .collect();
            let _ = parse_command(&bytes);
        }
    }
}
