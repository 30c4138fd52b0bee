//! Deterministic fuzzing: random inputs and mutations of valid frames, fed to
//! the decoders. Nothing may panic; whatever decodes must re-encode to bytes
//! that decode to the same value.

use super::super::*;
use super::frames::frame_vectors;
use super::util::{XorShift, frame_bytes, hex, random_frame};

const RANDOM_INPUTS: usize = 50_000;
const MUTATIONS: usize = 50_000;

/// Decodes `buf` and checks what comes out.
fn check(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let result = decode_frame(buf, limits);
    if let Ok(Some((frame, used))) = &result {
        assert!(
            *used >= HEADER_BYTES && *used <= buf.len(),
            "used {used} of {}",
            buf.len()
        );
        let mut again = Vec::new();
        // Can fail only if lossy UTF-8 decoding grew a string past its prefix.
        if encode_frame(frame, &mut again).is_ok() {
            assert_eq!(
                decode_frame(&again, limits),
                Ok(Some((frame.clone(), again.len()))),
                "re-encoding {frame:?}"
            );
        }
    }
    result
}

/// A header with consistent lengths around `head_map` and `body`.
fn framed(rng: &mut XorShift, head_map: &[u8], body: &[u8]) -> Vec<u8> {
    let head = 16 + head_map.len();
    let full = head + body.len();
    let mut bytes = vec![0xda, 0xda, 0x01];
    bytes.extend_from_slice(&(full as u32).to_be_bytes());
    bytes.extend_from_slice(&(head as u16).to_be_bytes());
    let message_type = if rng.chance(8) {
        rng.byte()
    } else {
        rng.below(5) as u8
    };
    bytes.extend_from_slice(&[message_type, 0x01, 0x00]);
    bytes.extend_from_slice(&rng.u32().to_be_bytes());
    bytes.extend_from_slice(head_map);
    bytes.extend_from_slice(body);
    bytes
}

const KNOWN_CODES: &[i16] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 59, 60, 101, 102, 103,
    104, 111, 120, 121,
];

/// Random bytes behind a known type code, with small length fields likely.
fn random_body(rng: &mut XorShift) -> Vec<u8> {
    let mut body = rng.pick(KNOWN_CODES).to_be_bytes().to_vec();
    let len = rng.below(48);
    for _ in 0..len {
        // Mostly small values, so that length prefixes often fit.
        body.push(if rng.chance(3) {
            rng.byte()
        } else {
            rng.below(4) as u8
        });
    }
    body
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = XorShift::new(0xfeed_beef);
    let limits = FrameLimits::default();
    let mut decoded = 0;
    for i in 0..RANDOM_INPUTS {
        let input = match i % 4 {
            0 => {
                let n = rng.below(64);
                rng.bytes(n)
            }
            1 => {
                let mut b = vec![0xda, 0xda, 0x01];
                let n = rng.below(64);
                b.extend(rng.bytes(n));
                b
            }
            2 => {
                let map_len = if rng.chance(4) { rng.below(16) } else { 0 };
                let map = rng.bytes(map_len);
                let body = random_body(&mut rng);
                framed(&mut rng, &map, &body)
            }
            _ => {
                let body = random_body(&mut rng);
                let _ = decode_body(&body, &limits);
                body
            }
        };
        if let Ok(Some(_)) = check(&input, &limits) {
            decoded += 1;
        }
    }
    // The structured inputs reach the message decoders and sometimes pass.
    assert!(decoded > 0, "no random input decoded");
}

const INTERESTING_BYTES: &[u8] = &[0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0xda, 0x10];

fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.byte());
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(8) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.pick(INTERESTING_BYTES),
        2 => bytes[at] = rng.byte(),
        3 => bytes.insert(at, rng.byte()),
        4 => {
            bytes.remove(at);
        }
        5 => bytes.truncate(at),
        6 => {
            // Overwrite what may be a length field with a boundary value.
            let value: u32 = rng.pick(&[
                0,
                1,
                0x7fff,
                0x8000,
                0xffff,
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
            ]);
            let width = if rng.chance(2) { 2 } else { 4 };
            let bytes_of = value.to_be_bytes();
            for (k, b) in bytes_of[4 - width..].iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        _ => {
            // Duplicate a slice.
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            let copy = bytes[at..end].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, copy);
        }
    }
}

/// Makes the header's lengths agree with the buffer, so that the mutation
/// reaches the head map and body decoders.
fn fix_lengths(bytes: &mut [u8]) {
    if bytes.len() >= 16 {
        let full = (bytes.len() as u32).to_be_bytes();
        bytes[3..7].copy_from_slice(&full);
        let head = u16::from_be_bytes([bytes[7], bytes[8]]);
        if usize::from(head) > bytes.len() {
            bytes[7..9].copy_from_slice(&16u16.to_be_bytes());
        }
    }
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = XorShift::new(0xdada_0001);
    let limits = FrameLimits::default();
    let mut corpus: Vec<Vec<u8>> = frame_vectors().iter().map(|(_, h, _)| hex(h)).collect();
    corpus.extend((0..200).map(|_| frame_bytes(&random_frame(&mut rng))));
    let (mut ok, mut incomplete, mut errors) = (0, 0, 0);
    for _ in 0..MUTATIONS {
        let mut bytes = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut bytes);
        }
        if rng.chance(2) {
            fix_lengths(&mut bytes);
        }
        match check(&bytes, &limits) {
            Ok(Some(_)) => ok += 1,
            Ok(None) => incomplete += 1,
            Err(_) => errors += 1,
        }
        // Body decoders directly, on the bytes after the header.
        if let Some(body) = bytes.get(16..) {
            let _ = decode_body(body, &limits);
        }
    }
    // All three outcomes occur: the mutations are neither all fatal nor all
    // harmless.
    assert!(
        ok > 0 && incomplete > 0 && errors > 0,
        "{ok} ok, {incomplete} incomplete, {errors} errors"
    );
}

#[test]
fn hostile_counts_and_lengths_fail_without_reading_past_the_input() {
    let limits = FrameLimits::default();
    // A batch announcing 32767 messages in an 8-byte body.
    let body = hex("003b | 00000002 | 7fff");
    assert_eq!(
        decode_body(&body, &limits),
        Err(ProtocolError::Truncated {
            field: "message type code",
            needed: 2,
            remaining: 0
        })
    );
    // A batch content length beyond the body.
    let body = hex("003b | 7fffffff | 0001");
    assert_eq!(
        decode_body(&body, &limits),
        Err(ProtocolError::BatchLengthMismatch {
            declared: 0x7fff_ffff,
            actual: 2
        })
    );
    let body = hex("003b | 00000004 | 7fff 0001");
    assert!(matches!(
        decode_body(&body, &limits),
        Err(ProtocolError::Truncated { .. })
    ));
    // A 2 GiB lock key announced in a small body.
    let body = hex("000b | 0000 | 00 | 0000 | 7fffffff | 00");
    assert_eq!(
        decode_body(&body, &limits),
        Err(ProtocolError::Truncated {
            field: "lock_key",
            needed: 0x7fff_ffff,
            remaining: 1
        })
    );
}
