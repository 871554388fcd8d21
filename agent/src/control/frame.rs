//! Framing of control-plane messages on a byte stream: a 4-byte big-endian length, then that
//! many bytes of JSON. A hard size limit keeps a hostile or broken peer from making us
//! allocate without bound; the length is checked before anything is read or allocated.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame body accepted or sent. A full membership of a few thousand nodes
/// (about 1.5 KiB per record) fits; anything bigger is a bug or an attack.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Bytes of the length prefix.
const LEN_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("control message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed control message: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("cannot encode control message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("connection closed")]
    Closed,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `message` as one frame (length prefix included).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LEN_BYTES];
    serde_json::to_writer(&mut out, message).map_err(FrameError::Encode)?;
    let len = out.len() - LEN_BYTES;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    out[..LEN_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame body (without the length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: body.len(),
            limit: MAX_FRAME_LEN,
        });
    }
    serde_json::from_slice(body).map_err(FrameError::Malformed)
}

/// One frame body and the bytes after it.
pub type FrameAndRest<'a> = (&'a [u8], &'a [u8]);

/// Splits one complete frame off the front of `buffer`, if there is one: `Ok(None)` means
/// more bytes are needed. Used by the tests and by anything that buffers by hand.
pub fn split_frame(buffer: &[u8]) -> Result<Option<FrameAndRest<'_>>, FrameError> {
    let Some(prefix) = buffer.get(..LEN_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    let rest = &buffer[LEN_BYTES..];
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(rest.split_at(len)))
}

/// Writes one message as a frame.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    let frame = encode(message)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it. A clean end of stream before a frame starts is
/// [`FrameError::Closed`].
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<T, FrameError> {
    read_message_limited(reader, MAX_FRAME_LEN).await
}

/// [`read_message`] with a lower limit than [`MAX_FRAME_LEN`], for what strangers send (a
/// join request is a few KiB): the body is allocated from the length prefix, so the limit
/// is what one connection can make us hold.
pub async fn read_message_limited<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    limit: usize,
) -> Result<T, FrameError> {
    let body = read_body_limited(reader, limit).await?;
    decode_body(&body)
}

/// Reads one frame's body (up to `limit` bytes) without decoding it: for a reader that
/// decides itself what an undecodable body means ([`super::protocol::decode_member`]).
pub async fn read_body_limited<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Vec<u8>, FrameError> {
    let limit = limit.min(MAX_FRAME_LEN);
    let mut prefix = [0u8; LEN_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_split() {
        let frame = encode(&vec!["a".to_owned(), "b".to_owned()]).unwrap();
        assert_eq!(split_frame(&frame[..3]).unwrap(), None);
        assert_eq!(split_frame(&frame[..frame.len() - 1]).unwrap(), None);
        let (body, rest) = split_frame(&frame).unwrap().unwrap();
        assert!(rest.is_empty());
        let back: Vec<String> = decode_body(body).unwrap();
        assert_eq!(back, ["a", "b"]);
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut frame = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(b"{}");
        assert!(matches!(
            split_frame(&frame),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn oversized_frame_on_a_stream_is_refused() {
        let mut data: &[u8] = &u32::MAX.to_be_bytes();
        let result: Result<String, _> = read_message(&mut data).await;
        assert!(matches!(result, Err(FrameError::TooLarge { .. })));
        let mut empty: &[u8] = &[];
        let result: Result<String, _> = read_message(&mut empty).await;
        assert!(matches!(result, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn a_lower_limit_refuses_what_the_frame_limit_allows() {
        let frame = encode(&"x".repeat(100)).unwrap();
        let result: Result<String, _> = read_message_limited(&mut &frame[..], 64).await;
        match result {
            Err(
                error @ FrameError::TooLarge {
                    len: 102,
                    limit: 64,
                },
            ) => assert_eq!(
                error.to_string(),
                "control message of 102 bytes exceeds the limit of 64 bytes"
            ),
            other => panic!("{other:?}"),
        }
        let result: Result<String, _> = read_message_limited(&mut &frame[..], 102).await;
        assert_eq!(result.unwrap(), "x".repeat(100));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((body, _))) = split_frame(&bytes) {
                let _ = decode_body::<crate::control::message::Message>(body);
                let _ = crate::control::protocol::decode_member(body);
            }
            let _ = decode_body::<crate::control::message::Message>(&bytes);
        }
    }
}
