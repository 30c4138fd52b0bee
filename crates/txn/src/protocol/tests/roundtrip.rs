//! Random round trips: encode then decode gives back the value, for
//! messages, frames and streams of frames.

use super::super::*;
use super::util::{XorShift, body_bytes, frame_bytes, random_frame, random_message};

#[test]
fn random_messages_round_trip() {
    let mut rng = XorShift::new(0x1234_5678);
    for i in 0..3_000 {
        let msg = random_message(&mut rng);
        let bytes = body_bytes(&msg);
        assert_eq!(
            decode_body(&bytes, &FrameLimits::default()).as_ref(),
            Ok(&msg),
            "message {i}"
        );
        // Re-encoding the decoded value gives the same bytes.
        assert_eq!(body_bytes(&msg), bytes);
    }
}

#[test]
fn random_frames_round_trip() {
    let mut rng = XorShift::new(42);
    for i in 0..2_000 {
        let frame = random_frame(&mut rng);
        let bytes = frame_bytes(&frame);
        assert_eq!(
            decode_frame(&bytes, &FrameLimits::default()),
            Ok(Some((frame.clone(), bytes.len()))),
            "frame {i}"
        );
        if i % 20 == 0 {
            for end in 0..bytes.len() {
                assert_eq!(
                    decode_frame(&bytes[..end], &FrameLimits::default()),
                    Ok(None),
                    "frame {i} cut at {end}"
                );
            }
        }
    }
}

#[test]
fn random_frame_stream_in_random_chunks() {
    let mut rng = XorShift::new(7);
    let frames: Vec<Frame> = (0..300).map(|_| random_frame(&mut rng)).collect();
    let stream: Vec<u8> = frames.iter().flat_map(frame_bytes).collect();
    let mut buffer = Vec::new();
    let mut decoded = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        let chunk = (1 + rng.below(300)).min(stream.len() - fed);
        buffer.extend_from_slice(&stream[fed..fed + chunk]);
        fed += chunk;
        while let Some((frame, used)) = decode_frame(&buffer, &FrameLimits::default()).unwrap() {
            decoded.push(frame);
            buffer.drain(..used);
        }
    }
    assert!(buffer.is_empty());
    assert_eq!(decoded, frames);
}
