//! Thumbnails of images, made once when an upload completes. An image's
//! size is read from its header first: one that claims more pixels than
//! `files.max_image_pixels` (a decompression bomb does) is refused before
//! anything is decoded, and decoding is bounded in memory as well.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::protocol::ProtocolError;

/// The most memory decoding one image may take.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// An image's size and its thumbnail.
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

fn unreadable(err: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::invalid(format!("the image cannot be read: {err}"))
}

fn reader(
    path: &Path,
    max_pixels: u64,
) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, ProtocolError> {
    let mut reader = ImageReader::open(path)
        .map_err(unreadable)?
        .with_guessed_format()
        .map_err(unreadable)?;
    let mut limits = Limits::default();
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Ok(reader)
}

/// Reads the image at `path` and makes its thumbnail, at most `px` on its
/// longest side. A PNG or GIF thumbnail stays PNG (transparency), a JPEG
/// one JPEG.
pub fn make(path: &Path, mime: &str, px: u32, max_pixels: u64) -> Result<Thumbnail, ProtocolError> {
    let (width, height) = reader(path, max_pixels)?
        .into_dimensions()
        .map_err(unreadable)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ProtocolError::invalid(format!(
            "the image is {width}×{height} pixels, more than the {max_pixels} this server \
             makes thumbnails of"
        )));
    }
    let image = reader(path, max_pixels)?.decode().map_err(unreadable)?;
    let small = if width > px || height > px {
        image.thumbnail(px, px)
    } else {
        image
    };
    let mut bytes = Vec::new();
    let encoded = if mime == "image/jpeg" {
        DynamicImage::ImageRgb8(small.to_rgb8())
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
    } else {
        small.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
    };
    encoded.map_err(|e| ProtocolError::internal(format!("failed to encode a thumbnail: {e}")))?;
    Ok(Thumbnail {
        width,
        height,
        bytes,
    })
}

/// The type of a thumbnail made of an image of type `mime`.
pub fn mime_of(mime: &str) -> &'static str {
    if mime == "image/jpeg" {
        "image/jpeg"
    } else {
        "image/png"
    }
}
