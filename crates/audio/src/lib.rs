//! Audio transcoding (being written).
