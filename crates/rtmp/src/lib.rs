//! RTMP ingest (being written).
