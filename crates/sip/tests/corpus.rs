//! Every file of `tests/corpus/` is a malformed SIP message: each must give
//! an error (from parsing, or from validating what parsed), never a panic,
//! over a datagram and over a stream split anywhere.

use std::path::PathBuf;

use mediamesh_sip::{Frame, Message, Request, StreamFramer};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn validate(m: &Message) -> Result<(), String> {
    match m {
        Message::Request(r) => r.validate().map_err(|e| e.to_string()),
        Message::Response(r) => r.validate().map_err(|e| e.to_string()),
    }
}

#[test]
fn every_corpus_file_is_an_error() {
    let files = corpus();
    assert!(files.len() >= 40, "corpus has {} files", files.len());
    for (name, bytes) in &files {
        let verdict = match Message::parse(bytes) {
            Err(e) => Err(e.to_string()),
            Ok(m) => validate(&m),
        };
        let reason = verdict.expect_err(&format!("{name} was accepted"));
        // The reason is fit for a reason phrase.
        assert!(
            !reason.is_empty() && !reason.contains(['\r', '\n']),
            "{name}: {reason:?}"
        );
        // Salvaging for a 400 never panics either.
        let _ = Request::salvage(bytes);
    }
}

#[test]
fn every_corpus_file_fails_on_a_stream_too() {
    for (name, bytes) in corpus() {
        for chunk in [1usize, 13, 4096] {
            let mut f = StreamFramer::new();
            let mut accepted = 0;
            'feed: for part in bytes.chunks(chunk) {
                if f.push(part).is_err() {
                    break;
                }
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            if validate(&m).is_ok() {
                                accepted += 1;
                            }
                        }
                        Ok(Some(Frame::KeepAlive)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
            assert_eq!(
                accepted, 0,
                "{name} accepted on a stream (chunks of {chunk})"
            );
        }
    }
}
