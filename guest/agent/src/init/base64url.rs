//! Base64url (RFC 4648 §5) decoding, as vmctl encodes `vmctl.cmd=`: no padding expected,
//! trailing `=` tolerated.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error(
        "byte {byte:#04x} at offset {offset} is not in the base64url alphabet (A-Z a-z 0-9 - _)"
    )]
    InvalidByte { offset: usize, byte: u8 },
    #[error("length {0} is impossible for base64 (a final group of one character)")]
    InvalidLength(usize),
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decodes base64url text. Leftover bits of a final partial group are ignored.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let len = text.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
    let text = &text[..len];
    let mut out = Vec::with_capacity(len / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for (offset, &byte) in text.iter().enumerate() {
        let v = value(byte).ok_or(DecodeError::InvalidByte { offset, byte })?;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if len % 4 == 1 {
        return Err(DecodeError::InvalidLength(len));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&str, &str); 7] = [
            ("", ""),
            ("Zg", "f"),
            ("Zm8", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9vYmE", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (enc, dec) in cases {
            assert_eq!(decode(enc.as_bytes()).unwrap(), dec.as_bytes(), "{enc}");
        }
    }

    #[test]
    fn url_alphabet_and_binary() {
        // 0xfb 0xff 0xbf is "-_-_" in base64url ("+/+/" in standard base64)
        assert_eq!(decode(b"-_-_").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(decode(b"AA").unwrap(), [0]);
        assert_eq!(decode(b"AAA").unwrap(), [0, 0]);
    }

    #[test]
    fn argv_with_nul_separators() {
        // "echo\0hi" (what `vmctl boot -- echo hi` sends)
        assert_eq!(decode(b"ZWNobwBoaQ").unwrap(), b"echo\0hi");
    }

    #[test]
    fn padding_tolerated() {
        assert_eq!(decode(b"Zg==").unwrap(), b"f");
        assert_eq!(decode(b"Zm8=").unwrap(), b"fo");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode(b"Zm+v"),
            Err(DecodeError::InvalidByte {
                offset: 2,
                byte: b'+'
            })
        );
        assert_eq!(
            decode(b"Zm9v="),
            Ok(b"foo".to_vec()),
            "a lone trailing '=' is just padding"
        );
        assert_eq!(decode(b"Zm9vY"), Err(DecodeError::InvalidLength(5)));
        assert!(matches!(
            decode(b"Zm 9v"),
            Err(DecodeError::InvalidByte { offset: 2, .. })
        ));
    }
}
