//! Analysis: a received study in, one typed Finding out (issue in progress).
//! `image` decodes pixels to modality values; `risk` computes the OST clinical index.

pub mod ct;
pub mod image;
pub mod risk;
