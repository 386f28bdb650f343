//! Demo pages, embedded in the binary so `mediamesh` alone serves them.

pub const INDEX: &str = include_str!("../../../web/demo/index.html");
pub const WHIP: &str = include_str!("../../../web/demo/whip.html");
pub const WHEP: &str = include_str!("../../../web/demo/whep.html");
/// Styles and code shared by the WHIP and WHEP pages.
pub const CSS: &str = include_str!("../../../web/demo/demo.css");
pub const JS: &str = include_str!("../../../web/demo/demo.js");
/// The demo room app, on our SDK.
pub const ROOM: &str = include_str!("../../../web/demo/room.html");
/// `@mediamesh/sdk` bundled for browsers (generated from sdk/ by
/// `npm run bundle:web`; the test suite checks it is current).
pub const SDK_JS: &str = include_str!("../../../web/demo/mediamesh-sdk.js");
