//! TiKV's memcomparable byte encoding.
//!
//! TiKV stores transactional keys (and every API v2 key) memcomparable-encoded, and region
//! boundaries of that data are expressed in the encoded form. The encoding cuts the key into
//! groups of 8 bytes; each group is written in full (the last one zero-padded) and followed by a
//! marker byte `0xFF - padding`. A key whose length is a multiple of 8 therefore ends with a
//! group of 8 zero bytes and the marker `0xF7`. Encoded keys sort exactly as the original keys.
//!
//! ```
//! use tikv_client::kv::memcomparable::{encode, decode};
//! let encoded = encode(b"abc");
//! assert_eq!(encoded, b"abc\0\0\0\0\0\xFA");
//! assert_eq!(decode(&encoded).unwrap(), (b"abc".to_vec(), 9));
//! ```

use crate::{Error, Result};

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;

/// The encoded length of a key of `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    (len / GROUP + 1) * (GROUP + 1)
}

/// Encodes `key`.
pub fn encode(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(key.len()));
    encode_into(key, &mut out);
    out
}

/// Appends the encoding of `key` to `out`.
pub fn encode_into(key: &[u8], out: &mut Vec<u8>) {
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.resize(out.len() + pad, 0);
    out.push(MARKER - pad as u8);
}

/// Decodes one encoded key from the front of `data`: returns the key and how many bytes of
/// `data` it used (the rest, for example a timestamp suffix, is left alone).
///
/// Fails with [`Error::UnexpectedResponse`] on input no encoder could have produced: a
/// truncated group, a marker outside `0xF7..=0xFF`, or non-zero padding.
pub fn decode(data: &[u8]) -> Result<(Vec<u8>, usize)> {
    let mut key = Vec::with_capacity(data.len() / (GROUP + 1) * GROUP);
    let mut offset = 0;
    loop {
        let Some(group) = data.get(offset..offset + GROUP + 1) else {
            return Err(malformed(data, "truncated group"));
        };
        offset += GROUP + 1;
        let marker = group[GROUP];
        let pad = usize::from(MARKER - marker);
        if pad == 0 {
            key.extend_from_slice(&group[..GROUP]);
            continue;
        }
        if pad > GROUP {
            return Err(malformed(data, "invalid marker"));
        }
        let (bytes, padding) = group[..GROUP].split_at(GROUP - pad);
        if padding.iter().any(|b| *b != 0) {
            return Err(malformed(data, "non-zero padding"));
        }
        key.extend_from_slice(bytes);
        return Ok((key, offset));
    }
}

/// Decodes a whole encoded key, failing if bytes are left over.
pub fn decode_exact(data: &[u8]) -> Result<Vec<u8>> {
    let (key, used) = decode(data)?;
    if used != data.len() {
        return Err(malformed(data, "trailing bytes"));
    }
    Ok(key)
}

fn malformed(data: &[u8], why: &str) -> Error {
    Error::UnexpectedResponse(format!(
        "malformed memcomparable key ({why}): {}",
        data.iter().map(|b| format!("{b:02X}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode(b""), [0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(encode(b"a"), [b'a', 0, 0, 0, 0, 0, 0, 0, 0xF8]);
        assert_eq!(
            encode(b"12345678"),
            [b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0xF7]
        );
        assert_eq!(
            encode(b"123456789"),
            [
                b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', 0xFF, b'9', 0, 0, 0, 0, 0, 0, 0,
                0xF8
            ]
        );
        assert_eq!(encoded_len(0), 9);
        assert_eq!(encoded_len(8), 18);
        assert_eq!(encoded_len(9), 18);
    }

    #[test]
    fn round_trips_and_preserves_order() {
        let mut keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![0xFF],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0\0\0\0\0\0".to_vec(),
            b"a\0\0\0\0\0\0\0\0".to_vec(),
            b"ab".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefghi".to_vec(),
            vec![0xFF; 17],
        ];
        keys.sort();
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode(k)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(&decode_exact(e).unwrap(), k);
            assert_eq!(e.len(), encoded_len(k.len()));
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded, "encoding must preserve byte order");
    }

    #[test]
    fn decode_leaves_a_suffix_alone() {
        let mut data = encode(b"key");
        data.extend_from_slice(&42u64.to_be_bytes());
        let (key, used) = decode(&data).unwrap();
        assert_eq!(key, b"key");
        assert_eq!(&data[used..], &42u64.to_be_bytes());
        assert!(decode_exact(&data).is_err());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(decode(b"").is_err());
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0xF6]).is_err(), "pad 9");
        assert!(
            decode(&[b'a', 1, 0, 0, 0, 0, 0, 0, 0xF8]).is_err(),
            "non-zero padding"
        );
        assert!(
            decode(&[b'a', 0, 0, 0, 0, 0, 0, 0, 0xFF]).is_err(),
            "no final group"
        );
    }
}
