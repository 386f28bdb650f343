//! The Dependency Descriptor RTP header extension (AV1 RTP payload
//! specification, Appendix A): parser, and the rewrite an SFU needs to send
//! it on to a subscriber.
//!
//! The descriptor is stateful: a keyframe carries the *template dependency
//! structure* (templates of spatial/temporal layer, decode target indications,
//! frame diffs and chain diffs), and later packets name a template by id
//! (`(frame_dependency_template_id + 64 - template_id_offset) % 64` is its
//! index). [`DdParser`] keeps the latest structure and the active decode
//! targets bitmask; [`parse`] is the stateless core.
//!
//! Everything here works on bytes from the network: it never panics, errors
//! are values ([`DdError`]), and lengths are bounded ([`MAX_TEMPLATES`],
//! [`MAX_FDIFFS`]).

/// The extension's URI, to negotiate in SDP (`a=extmap`).
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Decode targets (DtCnt is 5 bits + 1).
pub const MAX_DECODE_TARGETS: usize = 32;
/// Templates (template ids are 6 bits).
pub const MAX_TEMPLATES: usize = 64;
/// Frame dependencies (fdiffs) of one frame or template. The spec does not
/// bound the list; AV1 has 7 reference slots, so 16 leaves room.
pub const MAX_FDIFFS: usize = 16;
/// Chains (at most one per decode target).
pub const MAX_CHAINS: usize = MAX_DECODE_TARGETS;

/// Why a descriptor could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DdError {
    #[error("dependency descriptor shorter than its 3 mandatory bytes")]
    TooShort,
    #[error("dependency descriptor truncated")]
    Truncated,
    #[error("no template dependency structure received yet")]
    NoStructure,
    #[error("template id {0} is not in the current structure")]
    UnknownTemplate(u8),
    #[error("more than 64 templates")]
    TooManyTemplates,
    #[error("more than 16 frame dependencies")]
    TooManyFdiffs,
}

/// A decode target indication (Table A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dti {
    /// No payload for this decode target.
    NotPresent,
    /// Payload for this decode target; no later frame of it depends on this one.
    Discardable,
    /// A switch point: the decode target is decodable from this frame on.
    Switch,
    /// Payload that later frames of this decode target depend on.
    Required,
}

impl Dti {
    fn from_bits(v: u32) -> Dti {
        match v & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }

    /// The 2-bit code.
    pub fn bits(self) -> u8 {
        match self {
            Dti::NotPresent => 0,
            Dti::Discardable => 1,
            Dti::Switch => 2,
            Dti::Required => 3,
        }
    }
}

/// The DTI of every decode target of one frame or template (2 bits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Dtis {
    packed: u64,
    len: u8,
}

impl Dtis {
    /// Builds a list (values beyond [`MAX_DECODE_TARGETS`] are ignored).
    pub fn from_slice(dtis: &[Dti]) -> Self {
        let mut d = Dtis::default();
        for &v in dtis.iter().take(MAX_DECODE_TARGETS) {
            d.push(v);
        }
        d
    }

    fn push(&mut self, v: Dti) {
        if usize::from(self.len) < MAX_DECODE_TARGETS {
            self.packed |= u64::from(v.bits()) << (2 * u32::from(self.len));
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indication for decode target `dt` (`NotPresent` beyond the list).
    pub fn get(&self, dt: usize) -> Dti {
        if dt >= self.len() {
            return Dti::NotPresent;
        }
        Dti::from_bits((self.packed >> (2 * dt)) as u32)
    }

    pub fn iter(&self) -> impl Iterator<Item = Dti> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Frame number differences to the frames a frame references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Fdiffs {
    vals: [u16; MAX_FDIFFS],
    len: u8,
}

impl Fdiffs {
    /// Builds a list; `None` when longer than [`MAX_FDIFFS`].
    pub fn from_slice(v: &[u16]) -> Option<Self> {
        let mut f = Fdiffs::default();
        for &x in v {
            f.push(x).ok()?;
        }
        Some(f)
    }

    fn push(&mut self, v: u16) -> Result<(), DdError> {
        let slot = self
            .vals
            .get_mut(usize::from(self.len))
            .ok_or(DdError::TooManyFdiffs)?;
        *slot = v;
        self.len += 1;
        Ok(())
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.vals[..usize::from(self.len)]
    }
}

/// Per chain, the frame number difference to the previous frame in the
/// chain (0: no previous frame is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ChainFdiffs {
    vals: [u8; MAX_CHAINS],
    len: u8,
}

impl ChainFdiffs {
    /// Builds a list (values beyond [`MAX_CHAINS`] are ignored).
    pub fn from_slice(v: &[u8]) -> Self {
        let mut c = ChainFdiffs::default();
        for &x in v.iter().take(MAX_CHAINS) {
            c.push(x);
        }
        c
    }

    fn push(&mut self, v: u8) {
        if let Some(slot) = self.vals.get_mut(usize::from(self.len)) {
            *slot = v;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.vals[..usize::from(self.len)]
    }

    /// The diff of chain `k` (0 beyond the list).
    pub fn get(&self, k: usize) -> u8 {
        self.as_slice().get(k).copied().unwrap_or(0)
    }
}

/// One template of a structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameTemplate {
    pub spatial_id: u8,
    pub temporal_id: u8,
    pub dtis: Dtis,
    pub fdiffs: Fdiffs,
    pub chain_fdiffs: ChainFdiffs,
}

/// A render resolution (the `_minus_1` fields plus one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenderResolution {
    pub width: u32,
    pub height: u32,
}

/// The template dependency structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameDependencyStructure {
    pub template_id_offset: u8,
    /// DtCnt.
    pub decode_target_count: u8,
    pub templates: Vec<FrameTemplate>,
    /// chain_cnt (0: no chains).
    pub chain_count: u8,
    /// For each decode target, the chain protecting it (empty without chains).
    pub decode_target_protected_by_chain: Vec<u8>,
    /// Per spatial id 0..=max, when resolutions_present_flag is set.
    pub resolutions: Vec<RenderResolution>,
    /// The structure as sent (its bits, MSB first, and how many), so it can
    /// be attached to another descriptor unchanged.
    raw: Vec<u8>,
    raw_bits: usize,
}

impl FrameDependencyStructure {
    /// The template a frame names by its `frame_dependency_template_id`.
    pub fn template(&self, template_id: u8) -> Option<&FrameTemplate> {
        let idx =
            (usize::from(template_id & 63) + 64 - usize::from(self.template_id_offset & 63)) % 64;
        self.templates.get(idx)
    }

    /// The highest spatial and temporal id of the frames of decode target
    /// `dt` (DecodeTargetMaxSpatialId/TemporalId: over the templates whose
    /// DTI for it is not NOT_PRESENT).
    pub fn decode_target_layer(&self, dt: usize) -> Option<(u8, u8)> {
        if dt >= usize::from(self.decode_target_count) {
            return None;
        }
        let mut layer = (0, 0);
        for t in &self.templates {
            if t.dtis.get(dt) != Dti::NotPresent {
                layer.0 = layer.0.max(t.spatial_id);
                layer.1 = layer.1.max(t.temporal_id);
            }
        }
        Some(layer)
    }

    /// The chain protecting decode target `dt`, if the structure has chains.
    pub fn chain_of(&self, dt: usize) -> Option<u8> {
        self.decode_target_protected_by_chain.get(dt).copied()
    }

    /// MaxSpatialId.
    pub fn max_spatial_id(&self) -> u8 {
        self.templates.last().map_or(0, |t| t.spatial_id)
    }

    /// All decode targets, as a bitmask.
    pub fn all_decode_targets(&self) -> u32 {
        all_ones(self.decode_target_count)
    }
}

fn all_ones(n: u8) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Where the optional parts of a descriptor sit, in bits, for rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Layout {
    /// The three custom_* flags, as bits 2 (dtis), 1 (fdiffs), 0 (chains).
    custom_flags: u8,
    structure: (usize, usize),
    mask: Option<(usize, usize)>,
    custom: (usize, usize),
}

/// One packet's descriptor, resolved against its structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyDescriptor {
    pub start_of_frame: bool,
    pub end_of_frame: bool,
    pub template_id: u8,
    pub frame_number: u16,
    /// The packet carries a template dependency structure.
    pub structure_attached: bool,
    /// The active decode targets this packet signals: its
    /// active_decode_targets_bitmask, or all decode targets when it attaches
    /// a structure without a bitmask. `None` when it signals none.
    pub active_decode_targets: Option<u32>,
    /// DtCnt of the structure the frame refers to.
    pub decode_target_count: u8,
    pub spatial_id: u8,
    pub temporal_id: u8,
    pub dtis: Dtis,
    pub fdiffs: Fdiffs,
    pub chain_fdiffs: ChainFdiffs,
    /// FrameMaxWidth/Height when the structure has resolutions.
    pub resolution: Option<RenderResolution>,
    layout: Layout,
}

impl DependencyDescriptor {
    /// Whether the frame references no earlier frame.
    pub fn is_intra(&self) -> bool {
        self.fdiffs.as_slice().is_empty()
    }
}

/// Parses one descriptor. `latest` is the structure received before (used
/// when the packet carries none). Returns the descriptor and the structure
/// the packet carries, if any. Never panics.
pub fn parse(
    bytes: &[u8],
    latest: Option<&FrameDependencyStructure>,
) -> Result<(DependencyDescriptor, Option<FrameDependencyStructure>), DdError> {
    if bytes.len() < 3 {
        return Err(DdError::TooShort);
    }
    let mut r = BitReader::new(bytes);
    let start_of_frame = r.bit()?;
    let end_of_frame = r.bit()?;
    let template_id = r.read(6)? as u8;
    let frame_number = r.read(16)? as u16;

    let mut layout = Layout::default();
    let mut attached = None;
    let mut active = None;
    let (mut custom_dtis, mut custom_fdiffs, mut custom_chains) = (false, false, false);
    if bytes.len() > 3 {
        let structure_present = r.bit()?;
        let mask_present = r.bit()?;
        custom_dtis = r.bit()?;
        custom_fdiffs = r.bit()?;
        custom_chains = r.bit()?;
        layout.custom_flags =
            (u8::from(custom_dtis) << 2) | (u8::from(custom_fdiffs) << 1) | u8::from(custom_chains);
        if structure_present {
            let start = r.pos;
            let mut s = read_structure(&mut r)?;
            layout.structure = (start, r.pos);
            s.raw_bits = r.pos - start;
            s.raw = copy_bits(bytes, start, r.pos);
            active = Some(s.all_decode_targets());
            attached = Some(s);
        }
        if mask_present {
            let dt_cnt = attached
                .as_ref()
                .or(latest)
                .ok_or(DdError::NoStructure)?
                .decode_target_count;
            let start = r.pos;
            active = Some(r.read(u32::from(dt_cnt))?);
            layout.mask = Some((start, r.pos));
        }
    }
    let s = attached.as_ref().or(latest).ok_or(DdError::NoStructure)?;
    let t = s
        .template(template_id)
        .ok_or(DdError::UnknownTemplate(template_id))?;
    let dt_cnt = usize::from(s.decode_target_count);
    let custom_start = r.pos;
    let dtis = if custom_dtis {
        let mut d = Dtis::default();
        for _ in 0..dt_cnt {
            d.push(Dti::from_bits(r.read(2)?));
        }
        d
    } else {
        t.dtis
    };
    let fdiffs = if custom_fdiffs {
        let mut f = Fdiffs::default();
        loop {
            let size = r.read(2)?;
            if size == 0 {
                break;
            }
            f.push((r.read(4 * size)? + 1) as u16)?;
        }
        f
    } else {
        t.fdiffs
    };
    let chain_fdiffs = if custom_chains {
        let mut c = ChainFdiffs::default();
        for _ in 0..s.chain_count {
            c.push(r.read(8)? as u8);
        }
        c
    } else {
        t.chain_fdiffs
    };
    layout.custom = (custom_start, r.pos);
    let dd = DependencyDescriptor {
        start_of_frame,
        end_of_frame,
        template_id,
        frame_number,
        structure_attached: attached.is_some(),
        active_decode_targets: active,
        decode_target_count: s.decode_target_count,
        spatial_id: t.spatial_id,
        temporal_id: t.temporal_id,
        dtis,
        fdiffs,
        chain_fdiffs,
        resolution: s.resolutions.get(usize::from(t.spatial_id)).copied(),
        layout,
    };
    Ok((dd, attached))
}

fn read_structure(r: &mut BitReader<'_>) -> Result<FrameDependencyStructure, DdError> {
    let template_id_offset = r.read(6)? as u8;
    let dt_cnt = r.read(5)? as u8 + 1;

    // template_layers()
    let mut templates = Vec::new();
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        templates.push(FrameTemplate {
            spatial_id: spatial,
            temporal_id: temporal,
            dtis: Dtis::default(),
            fdiffs: Fdiffs::default(),
            chain_fdiffs: ChainFdiffs::default(),
        });
        let next_layer_idc = r.read(2)?;
        if next_layer_idc == 3 {
            break;
        }
        if templates.len() >= MAX_TEMPLATES {
            return Err(DdError::TooManyTemplates);
        }
        match next_layer_idc {
            1 => temporal += 1,
            2 => {
                temporal = 0;
                spatial += 1;
            }
            _ => {}
        }
    }

    // template_dtis()
    for t in templates.iter_mut() {
        for _ in 0..dt_cnt {
            t.dtis.push(Dti::from_bits(r.read(2)?));
        }
    }

    // template_fdiffs()
    for t in templates.iter_mut() {
        while r.bit()? {
            t.fdiffs.push(r.read(4)? as u16 + 1)?;
        }
    }

    // template_chains()
    let chain_count = r.ns(u32::from(dt_cnt) + 1)? as u8;
    let mut protected_by = Vec::new();
    if chain_count > 0 {
        for _ in 0..dt_cnt {
            protected_by.push(r.ns(u32::from(chain_count))? as u8);
        }
        for t in templates.iter_mut() {
            for _ in 0..chain_count {
                t.chain_fdiffs.push(r.read(4)? as u8);
            }
        }
    }

    // decode_target_layers() is derived: see decode_target_layer().

    let mut resolutions = Vec::new();
    if r.bit()? {
        let max_spatial = templates.last().map_or(0, |t| t.spatial_id);
        for _ in 0..=max_spatial {
            let width = r.read(16)? + 1;
            let height = r.read(16)? + 1;
            resolutions.push(RenderResolution { width, height });
        }
    }
    Ok(FrameDependencyStructure {
        template_id_offset,
        decode_target_count: dt_cnt,
        templates,
        chain_count,
        decode_target_protected_by_chain: protected_by,
        resolutions,
        raw: Vec::new(),
        raw_bits: 0,
    })
}

/// Whether 16-bit frame number `a` is before `b` (modulo 2^16).
pub fn frame_number_before(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) < 0
}

/// Keeps the latest structure and active decode targets of one stream.
#[derive(Debug, Clone, Default)]
pub struct DdParser {
    structure: Option<FrameDependencyStructure>,
    /// Frame number of the packet the structure came with.
    structure_frame: u16,
    /// Counts structure changes (a repeated identical structure is no change).
    generation: u32,
    active: u32,
    active_frame: u16,
    /// Whether the last parsed packet's structure was kept.
    taken: bool,
}

impl DdParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one packet's descriptor and keeps what it signals for later
    /// packets. A structure or bitmask in a packet older (by frame number)
    /// than the one that set the current value is used for that packet but
    /// not kept, so a late retransmission cannot roll the state back.
    pub fn parse(&mut self, bytes: &[u8]) -> Result<DependencyDescriptor, DdError> {
        let (dd, attached) = parse(bytes, self.structure.as_ref())?;
        let fnum = dd.frame_number;
        let mut took_structure = false;
        self.taken = false;
        if let Some(s) = attached {
            let stale = self.structure.is_some() && frame_number_before(fnum, self.structure_frame);
            if !stale {
                if self.structure.as_ref() != Some(&s) {
                    self.structure = Some(s);
                    self.generation = self.generation.wrapping_add(1);
                }
                self.structure_frame = fnum;
                took_structure = true;
                self.taken = true;
            }
        }
        if let Some(mask) = dd.active_decode_targets {
            if took_structure || !frame_number_before(fnum, self.active_frame) {
                self.active = mask;
                self.active_frame = fnum;
            }
        }
        Ok(dd)
    }

    /// The latest structure.
    pub fn structure(&self) -> Option<&FrameDependencyStructure> {
        self.structure.as_ref()
    }

    /// Whether the last parsed packet carried a structure that is now the
    /// current one (new, or a repetition of it).
    pub fn structure_taken(&self) -> bool {
        self.taken
    }

    /// Changes each time a different structure is kept.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The publisher's active decode targets (bit i: decode target i).
    pub fn active_decode_targets(&self) -> u32 {
        self.active
    }
}

/// Writes `original` (which parsed as `dd`) into `out` with the active
/// decode targets bitmask set to `mask` (when `Some`) and `attach` written
/// as the template dependency structure when the original carries none. The
/// other fields are copied bit for bit. `attach` must be the structure `dd`
/// was resolved against (its DtCnt sizes the bitmask).
pub fn rewrite(
    original: &[u8],
    dd: &DependencyDescriptor,
    attach: Option<&FrameDependencyStructure>,
    mask: Option<u32>,
    out: &mut Vec<u8>,
) {
    let l = dd.layout;
    let mut w = BitWriter::new(out);
    w.copy(original, 0, 24);
    let attach = attach.filter(|_| !dd.structure_attached);
    let structure = dd.structure_attached || attach.is_some();
    let mask_present = mask.is_some() || l.mask.is_some();
    w.write(u32::from(structure), 1);
    w.write(u32::from(mask_present), 1);
    w.write(u32::from(l.custom_flags), 3);
    if dd.structure_attached {
        w.copy(original, l.structure.0, l.structure.1);
    } else if let Some(s) = attach {
        w.copy(&s.raw, 0, s.raw_bits);
    }
    match (mask, l.mask) {
        (Some(m), _) => {
            let n = dd.decode_target_count;
            w.write(m & all_ones(n), u32::from(n));
        }
        (None, Some((a, b))) => w.copy(original, a, b),
        (None, None) => {}
    }
    w.copy(original, l.custom.0, l.custom.1);
    w.finish();
}

/// The bits `[from, to)` of `src`, MSB first, as bytes.
fn copy_bits(src: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = BitWriter::new(&mut v);
    w.copy(src, from, to);
    w.finish();
    v
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, DdError> {
        let byte = *self.data.get(self.pos / 8).ok_or(DdError::Truncated)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    /// f(n), n <= 32.
    fn read(&mut self, n: u32) -> Result<u32, DdError> {
        let mut v = 0u64;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    /// ns(n): a non-symmetric unsigned value in 0..n.
    fn ns(&mut self, n: u32) -> Result<u32, DdError> {
        let mut w = 0;
        let mut x = n;
        while x != 0 {
            x >>= 1;
            w += 1;
        }
        if w == 0 {
            return Ok(0);
        }
        let m = (1u32 << w) - n;
        let v = self.read(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = self.read(1)?;
        Ok((v << 1) - m + extra)
    }
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    bits: usize,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.clear();
        Self { out, bits: 0 }
    }

    fn push(&mut self, bit: bool) {
        if self.bits.is_multiple_of(8) {
            self.out.push(0);
        }
        if bit {
            if let Some(last) = self.out.last_mut() {
                *last |= 1 << (7 - self.bits % 8);
            }
        }
        self.bits += 1;
    }

    /// The low `n` bits of `v`, MSB first.
    fn write(&mut self, v: u32, n: u32) {
        for i in (0..n.min(32)).rev() {
            self.push((v >> i) & 1 == 1);
        }
    }

    /// Bits `[from, to)` of `src` (bits past its end read as 0).
    fn copy(&mut self, src: &[u8], from: usize, to: usize) {
        for p in from..to {
            let bit = src.get(p / 8).is_some_and(|b| (b >> (7 - p % 8)) & 1 == 1);
            self.push(bit);
        }
    }

    /// Pads with zero bits to a whole byte (already zero).
    fn finish(self) {}
}

/// Test helpers shared with the selector's tests: a bit writer that builds
/// descriptors field by field (independent of the code under test), a few
/// Chromium-like structures, and an encoder simulator.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::{Codec, MediaPacket};

    #[derive(Default)]
    pub struct Bits {
        bytes: Vec<u8>,
        n: usize,
    }

    impl Bits {
        pub fn put(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                if self.n.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if (v >> i) & 1 == 1 {
                    *self.bytes.last_mut().unwrap() |= 0x80 >> (self.n % 8);
                }
                self.n += 1;
            }
        }

        /// ns(n) encoding of `v` (the inverse of the spec's reading).
        pub fn ns(&mut self, v: u32, n: u32) {
            let w = 32 - n.leading_zeros();
            let m = (1 << w) - n;
            if v < m {
                self.put(v, w - 1);
            } else {
                let x = v + m;
                self.put(x >> 1, w - 1);
                self.put(x & 1, 1);
            }
        }

        pub fn finish(self) -> Vec<u8> {
            self.bytes
        }
    }

    #[derive(Clone, Debug)]
    pub struct T {
        pub s: u8,
        pub t: u8,
        pub key: bool,
        pub dtis: &'static str,
        pub fdiffs: Vec<u16>,
        pub chains: Vec<u8>,
    }

    fn t(s: u8, t: u8, key: bool, dtis: &'static str, fdiffs: &[u16], chains: &[u8]) -> T {
        T {
            s,
            t,
            key,
            dtis,
            fdiffs: fdiffs.to_vec(),
            chains: chains.to_vec(),
        }
    }

    #[derive(Clone, Debug)]
    pub struct S {
        pub offset: u8,
        pub dt_cnt: u8,
        pub templates: Vec<T>,
        pub chain_cnt: u8,
        pub protected: Vec<u8>,
        pub res: Vec<(u16, u16)>,
    }

    pub fn dti_code(c: char) -> u32 {
        match c {
            '-' => 0,
            'D' => 1,
            'S' => 2,
            'R' => 3,
            _ => panic!("bad dti {c}"),
        }
    }

    pub fn write_structure(b: &mut Bits, s: &S) {
        b.put(u32::from(s.offset), 6);
        b.put(u32::from(s.dt_cnt - 1), 5);
        for (i, tp) in s.templates.iter().enumerate() {
            let idc = match s.templates.get(i + 1) {
                None => 3,
                Some(n) if n.s == tp.s && n.t == tp.t => 0,
                Some(n) if n.s == tp.s && n.t == tp.t + 1 => 1,
                Some(n) if n.s == tp.s + 1 && n.t == 0 => 2,
                Some(n) => panic!("template order {tp:?} -> {n:?}"),
            };
            b.put(idc, 2);
        }
        for tp in &s.templates {
            assert_eq!(tp.dtis.len(), usize::from(s.dt_cnt));
            for c in tp.dtis.chars() {
                b.put(dti_code(c), 2);
            }
        }
        for tp in &s.templates {
            for &f in &tp.fdiffs {
                b.put(1, 1);
                b.put(u32::from(f - 1), 4);
            }
            b.put(0, 1);
        }
        b.ns(u32::from(s.chain_cnt), u32::from(s.dt_cnt) + 1);
        if s.chain_cnt > 0 {
            for &p in &s.protected {
                b.ns(u32::from(p), u32::from(s.chain_cnt));
            }
            for tp in &s.templates {
                assert_eq!(tp.chains.len(), usize::from(s.chain_cnt));
                for &c in &tp.chains {
                    b.put(u32::from(c), 4);
                }
            }
        }
        b.put(u32::from(!s.res.is_empty()), 1);
        for &(w, h) in &s.res {
            b.put(u32::from(w - 1), 16);
            b.put(u32::from(h - 1), 16);
        }
    }

    /// One descriptor's fields, written in spec order.
    #[derive(Clone, Debug, Default)]
    pub struct F<'a> {
        pub sof: bool,
        pub eof: bool,
        pub template_id: u8,
        pub frame_number: u16,
        pub structure: Option<&'a S>,
        /// (mask, DtCnt)
        pub mask: Option<(u32, u8)>,
        pub custom_dtis: Option<&'static str>,
        pub custom_fdiffs: Option<Vec<u16>>,
        pub custom_chains: Option<Vec<u8>>,
        /// Force the extended form even without anything in it.
        pub extended: bool,
    }

    pub fn build(f: &F<'_>) -> Vec<u8> {
        let mut b = Bits::default();
        b.put(u32::from(f.sof), 1);
        b.put(u32::from(f.eof), 1);
        b.put(u32::from(f.template_id), 6);
        b.put(u32::from(f.frame_number), 16);
        let ext = f.extended
            || f.structure.is_some()
            || f.mask.is_some()
            || f.custom_dtis.is_some()
            || f.custom_fdiffs.is_some()
            || f.custom_chains.is_some();
        if ext {
            b.put(u32::from(f.structure.is_some()), 1);
            b.put(u32::from(f.mask.is_some()), 1);
            b.put(u32::from(f.custom_dtis.is_some()), 1);
            b.put(u32::from(f.custom_fdiffs.is_some()), 1);
            b.put(u32::from(f.custom_chains.is_some()), 1);
            if let Some(s) = f.structure {
                write_structure(&mut b, s);
            }
            if let Some((m, n)) = f.mask {
                b.put(m, u32::from(n));
            }
            if let Some(d) = f.custom_dtis {
                for c in d.chars() {
                    b.put(dti_code(c), 2);
                }
            }
            if let Some(fd) = &f.custom_fdiffs {
                for &x in fd {
                    let v = u32::from(x - 1);
                    let size = if v < 16 {
                        1
                    } else if v < 256 {
                        2
                    } else {
                        3
                    };
                    b.put(size, 2);
                    b.put(v, 4 * size);
                }
                b.put(0, 2);
            }
            if let Some(c) = &f.custom_chains {
                for &x in c {
                    b.put(u32::from(x), 8);
                }
            }
        }
        let mut bytes = b.finish();
        while bytes.len() < 3 {
            bytes.push(0);
        }
        bytes
    }

    /// L1T3: one chain, pattern T0 T2 T1 T2.
    pub fn l1t3() -> S {
        S {
            offset: 0,
            dt_cnt: 3,
            templates: vec![
                t(0, 0, true, "SSS", &[], &[0]),
                t(0, 0, false, "SSS", &[4], &[4]),
                t(0, 1, false, "-DS", &[2], &[2]),
                t(0, 2, false, "--D", &[1], &[1]),
                t(0, 2, false, "--D", &[1], &[3]),
            ],
            chain_cnt: 1,
            protected: vec![0, 0, 0],
            res: vec![(640, 360)],
        }
    }

    /// L3T3 full SVC: DT 3*s+t; chain k (T0 frames of spatial ids <= k)
    /// protects the DTs of spatial id k.
    pub fn l3t3() -> S {
        S {
            offset: 0,
            dt_cnt: 9,
            templates: vec![
                t(0, 0, true, "SSSSSSSSS", &[], &[0, 0, 0]),
                t(0, 0, false, "SSSRRRRRR", &[12], &[12, 11, 10]),
                t(0, 1, false, "-DS-RR-RR", &[6], &[6, 5, 4]),
                t(0, 2, false, "--D--R--R", &[3], &[3, 2, 1]),
                t(1, 0, true, "---SSSSSS", &[1], &[1, 1, 1]),
                t(1, 0, false, "---SSSRRR", &[12, 1], &[1, 1, 1]),
                t(1, 1, false, "----DS-RR", &[6, 1], &[7, 6, 5]),
                t(1, 2, false, "-----D--R", &[3, 1], &[4, 3, 2]),
                t(2, 0, true, "------SSS", &[1], &[2, 1, 1]),
                t(2, 0, false, "------SSS", &[12, 1], &[2, 1, 1]),
                t(2, 1, false, "-------DS", &[6, 1], &[8, 7, 6]),
                t(2, 2, false, "--------D", &[3, 1], &[5, 4, 3]),
            ],
            chain_cnt: 3,
            protected: vec![0, 0, 0, 1, 1, 1, 2, 2, 2],
            res: vec![(320, 180), (640, 360), (1280, 720)],
        }
    }

    /// L3T3_KEY: spatial layers depend on each other on keyframes only.
    pub fn l3t3_key() -> S {
        S {
            offset: 0,
            dt_cnt: 9,
            templates: vec![
                t(0, 0, true, "SSSSSSSSS", &[], &[0, 0, 0]),
                t(0, 0, false, "SSS------", &[12], &[12, 11, 10]),
                t(0, 1, false, "-DS------", &[6], &[6, 5, 4]),
                t(0, 2, false, "--D------", &[3], &[3, 2, 1]),
                t(1, 0, true, "---SSSSSS", &[1], &[1, 1, 1]),
                t(1, 0, false, "---SSS---", &[12], &[1, 12, 11]),
                t(1, 1, false, "----DS---", &[6], &[7, 6, 5]),
                t(1, 2, false, "-----D---", &[3], &[4, 3, 2]),
                t(2, 0, true, "------SSS", &[1], &[2, 1, 1]),
                t(2, 0, false, "------SSS", &[12], &[2, 1, 12]),
                t(2, 1, false, "-------DS", &[6], &[8, 7, 6]),
                t(2, 2, false, "--------D", &[3], &[5, 4, 3]),
            ],
            chain_cnt: 3,
            protected: vec![0, 0, 0, 1, 1, 1, 2, 2, 2],
            res: vec![(320, 180), (640, 360), (1280, 720)],
        }
    }

    /// An encoder: produces the packets of temporal units (pattern
    /// T0 T2 T1 T2), with correct frame numbers and chain diffs (custom
    /// chains when no template has them).
    pub struct Sim {
        pub s: S,
        /// Whether chain `k` holds T0 frames of lower spatial layers too
        /// (full SVC) or only of spatial layer k (k-SVC; keyframe frames of
        /// lower layers belong to every chain).
        pub nested_chains: bool,
        pub spatial_layers: u8,
        pub packets_per_frame: u64,
        pub frame_number: u16,
        pub seq: u64,
        pub tu: u32,
        pub base: Instant,
        last_in_chain: Vec<Option<u16>>,
        pattern_pos: u32,
    }

    pub struct Pkt {
        pub packet: MediaPacket,
        pub frame_number: u16,
        pub spatial: u8,
        pub temporal: u8,
    }

    impl Sim {
        pub fn new(s: S, nested_chains: bool) -> Self {
            let spatial_layers = s.templates.last().map_or(0, |t| t.s) + 1;
            let chains = usize::from(s.chain_cnt);
            Self {
                s,
                nested_chains,
                spatial_layers,
                packets_per_frame: 2,
                frame_number: 100,
                seq: 1000,
                tu: 0,
                base: Instant::now(),
                last_in_chain: vec![None; chains],
                pattern_pos: 0,
            }
        }

        pub fn time(&self, tu: u32) -> Instant {
            self.base + Duration::from_millis(33 * u64::from(tu))
        }

        fn in_chain(&self, k: usize, s: u8, t: u8, key: bool) -> bool {
            let k = k as u8;
            if key {
                return s <= k;
            }
            t == 0 && if self.nested_chains { s <= k } else { s == k }
        }

        /// The packets of the next temporal unit.
        pub fn tu(&mut self, key: bool) -> Vec<Pkt> {
            if key {
                self.pattern_pos = 0;
                self.last_in_chain.iter_mut().for_each(|c| *c = None);
            }
            let temporal = [0u8, 2, 1, 2][(self.pattern_pos % 4) as usize];
            self.pattern_pos += 1;
            let ts = self.tu * 3000;
            let arrival = self.time(self.tu);
            self.tu += 1;
            let mut out = Vec::new();
            for s in 0..self.spatial_layers {
                let fnum = self.frame_number;
                self.frame_number = self.frame_number.wrapping_add(1);
                let chains: Vec<u8> = (0..usize::from(self.s.chain_cnt))
                    .map(|k| match self.last_in_chain[k] {
                        None => 0,
                        Some(p) => fnum.wrapping_sub(p) as u8,
                    })
                    .collect();
                let cands: Vec<usize> = (0..self.s.templates.len())
                    .filter(|&i| {
                        let tp = &self.s.templates[i];
                        tp.s == s && tp.t == temporal && tp.key == key
                    })
                    .collect();
                assert!(!cands.is_empty(), "no template for S{s}T{temporal}");
                let exact = cands
                    .iter()
                    .copied()
                    .find(|&i| self.s.templates[i].chains == chains);
                let idx = exact.unwrap_or(cands[0]);
                let custom_chains = exact.is_none().then(|| chains.clone());
                for k in 0..usize::from(self.s.chain_cnt) {
                    if self.in_chain(k, s, temporal, key) {
                        self.last_in_chain[k] = Some(fnum);
                    }
                }
                let template_id = ((usize::from(self.s.offset) + idx) % 64) as u8;
                for p in 0..self.packets_per_frame {
                    let sof = p == 0;
                    let eof = p + 1 == self.packets_per_frame;
                    let structure = (key && s == 0 && sof).then_some(&self.s);
                    let dd = build(&F {
                        sof,
                        eof,
                        template_id,
                        frame_number: fnum,
                        structure,
                        custom_chains: custom_chains.clone(),
                        ..F::default()
                    });
                    let packet = MediaPacket {
                        codec: Codec::Av1,
                        seq: self.seq,
                        timestamp: ts,
                        marker: eof && s + 1 == self.spatial_layers,
                        keyframe: key && s == 0 && sof,
                        audio_level: None,
                        dependency_descriptor: Some(Arc::from(dd)),
                        arrival,
                        payload: Arc::from(vec![if key && sof && s == 0 { 0x18 } else { 0x10 }, 0]),
                    };
                    self.seq += 1;
                    out.push(Pkt {
                        packet,
                        frame_number: fnum,
                        spatial: s,
                        temporal,
                    });
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn ns_reads_exactly_per_spec() {
        // ns(5): w = 3, m = 3: 0..=2 in two bits, 3 and 4 in three.
        let cases: &[(&[u8], u32)] = &[
            (&[0b0000_0000], 0),
            (&[0b0100_0000], 1),
            (&[0b1000_0000], 2),
            (&[0b1100_0000], 3),
            (&[0b1110_0000], 4),
        ];
        for &(bytes, want) in cases {
            let mut r = BitReader::new(bytes);
            assert_eq!(r.ns(5).unwrap(), want, "{bytes:?}");
        }
        // ns(4) is a plain 2-bit value; ns(1) reads nothing.
        let mut r = BitReader::new(&[0b1100_0000]);
        assert_eq!(r.ns(1).unwrap(), 0);
        assert_eq!(r.ns(4).unwrap(), 3);
        assert_eq!(r.pos, 2);
        // Writer and reader agree on every value for every n used by DtCnt.
        for n in 1..=33u32 {
            for v in 0..n {
                let mut b = Bits::default();
                b.ns(v, n);
                b.put(0, 8);
                let bytes = b.finish();
                let mut r = BitReader::new(&bytes);
                assert_eq!(r.ns(n).unwrap(), v, "ns({n}) of {v}");
            }
        }
    }

    #[test]
    fn parses_a_full_l3t3_structure() {
        let mut s = l3t3();
        s.offset = 60;
        let bytes = build(&F {
            sof: true,
            eof: false,
            template_id: 60,
            frame_number: 0xabcd,
            structure: Some(&s),
            ..F::default()
        });
        let (dd, st) = parse(&bytes, None).unwrap();
        let st = st.unwrap();
        assert!(dd.start_of_frame && !dd.end_of_frame);
        assert_eq!(dd.frame_number, 0xabcd);
        assert!(dd.structure_attached);
        assert_eq!(dd.active_decode_targets, Some(0x1ff));
        assert_eq!(st.template_id_offset, 60);
        assert_eq!(st.decode_target_count, 9);
        assert_eq!(st.templates.len(), 12);
        assert_eq!(st.chain_count, 3);
        assert_eq!(
            st.decode_target_protected_by_chain,
            vec![0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(
            st.resolutions,
            vec![
                RenderResolution {
                    width: 320,
                    height: 180
                },
                RenderResolution {
                    width: 640,
                    height: 360
                },
                RenderResolution {
                    width: 1280,
                    height: 720
                },
            ]
        );
        for (i, want) in s.templates.iter().enumerate() {
            let got = &st.templates[i];
            assert_eq!(
                (got.spatial_id, got.temporal_id),
                (want.s, want.t),
                "template {i}"
            );
            let dtis: Vec<u32> = got.dtis.iter().map(|d| u32::from(d.bits())).collect();
            let want_dtis: Vec<u32> = want.dtis.chars().map(dti_code).collect();
            assert_eq!(dtis, want_dtis, "template {i}");
            assert_eq!(
                got.fdiffs.as_slice(),
                want.fdiffs.as_slice(),
                "template {i}"
            );
            assert_eq!(
                got.chain_fdiffs.as_slice(),
                want.chains.as_slice(),
                "template {i}"
            );
        }
        for dt in 0..9 {
            assert_eq!(
                st.decode_target_layer(dt),
                Some((dt as u8 / 3, dt as u8 % 3))
            );
        }
        assert_eq!(st.decode_target_layer(9), None);
        assert_eq!(st.max_spatial_id(), 2);
        // Template ids wrap modulo 64 from the offset.
        assert_eq!(st.template(60).unwrap().spatial_id, 0);
        assert_eq!(st.template(3).unwrap(), &st.templates[7]);
        assert_eq!(st.template(7).unwrap(), &st.templates[11]);
        assert!(st.template(8).is_none());
        assert!(st.template(59).is_none());
        // The frame: template 60 -> index 0, the S0 keyframe.
        assert_eq!((dd.spatial_id, dd.temporal_id), (0, 0));
        assert!(dd.is_intra());
        assert_eq!(dd.dtis.get(8), Dti::Switch);
        assert_eq!(dd.chain_fdiffs.as_slice(), &[0, 0, 0]);
        assert_eq!(
            dd.resolution,
            Some(RenderResolution {
                width: 320,
                height: 180
            })
        );

        // A mandatory-only packet resolved against it: template 3 = S1T2.
        let bytes = build(&F {
            sof: false,
            eof: true,
            template_id: 3,
            frame_number: 7,
            ..F::default()
        });
        assert_eq!(bytes.len(), 3);
        let (dd, none) = parse(&bytes, Some(&st)).unwrap();
        assert!(none.is_none());
        assert!(!dd.start_of_frame && dd.end_of_frame);
        assert_eq!((dd.spatial_id, dd.temporal_id), (1, 2));
        assert_eq!(dd.fdiffs.as_slice(), &[3, 1]);
        assert_eq!(dd.chain_fdiffs.as_slice(), &[4, 3, 2]);
        assert_eq!(dd.dtis.get(5), Dti::Discardable);
        assert_eq!(dd.dtis.get(8), Dti::Required);
        assert_eq!(dd.dtis.get(2), Dti::NotPresent);
        assert_eq!(dd.active_decode_targets, None);
    }

    #[test]
    fn parses_custom_fields() {
        let s = l3t3();
        let (_, st) = parse(
            &build(&F {
                structure: Some(&s),
                ..F::default()
            }),
            None,
        )
        .unwrap();
        let st = st.unwrap();
        let bytes = build(&F {
            sof: true,
            eof: true,
            template_id: 5,
            frame_number: 65535,
            mask: Some((0b000_111_111, 9)),
            custom_dtis: Some("SRD-SRD-S"),
            custom_fdiffs: Some(vec![1, 16, 17, 256, 257, 4096]),
            custom_chains: Some(vec![0, 200, 255]),
            ..F::default()
        });
        let (dd, _) = parse(&bytes, Some(&st)).unwrap();
        assert_eq!((dd.spatial_id, dd.temporal_id), (1, 0));
        assert_eq!(dd.active_decode_targets, Some(0b000_111_111));
        let dtis: Vec<Dti> = dd.dtis.iter().collect();
        use Dti::*;
        assert_eq!(
            dtis,
            vec![
                Switch,
                Required,
                Discardable,
                NotPresent,
                Switch,
                Required,
                Discardable,
                NotPresent,
                Switch
            ]
        );
        assert_eq!(dd.fdiffs.as_slice(), &[1, 16, 17, 256, 257, 4096]);
        assert_eq!(dd.chain_fdiffs.as_slice(), &[0, 200, 255]);
        assert_eq!(dd.frame_number, 65535);

        // Too many fdiffs is an error, not a panic.
        let bytes = build(&F {
            template_id: 0,
            custom_fdiffs: Some(vec![1; MAX_FDIFFS + 1]),
            ..F::default()
        });
        assert_eq!(
            parse(&bytes, Some(&st)).unwrap_err(),
            DdError::TooManyFdiffs
        );
    }

    #[test]
    fn errors_are_values() {
        let s = l1t3();
        let full = build(&F {
            sof: true,
            template_id: 0,
            structure: Some(&s),
            ..F::default()
        });
        let (_, st) = parse(&full, None).unwrap();
        let st = st.unwrap();
        assert_eq!(parse(&[], None).unwrap_err(), DdError::TooShort);
        assert_eq!(parse(&[0x80, 0], Some(&st)).unwrap_err(), DdError::TooShort);
        assert_eq!(
            parse(&[0x80, 0, 1], None).unwrap_err(),
            DdError::NoStructure
        );
        // Template 5 of a 5-template structure with offset 0.
        assert_eq!(
            parse(&[0x85, 0, 1], Some(&st)).unwrap_err(),
            DdError::UnknownTemplate(5)
        );
        // A mask needs a structure to size it.
        let masked = build(&F {
            mask: Some((1, 3)),
            ..F::default()
        });
        assert_eq!(parse(&masked, None).unwrap_err(), DdError::NoStructure);
        // Every truncation of a descriptor carrying a structure fails cleanly.
        let l3 = l3t3();
        let full = build(&F {
            structure: Some(&l3),
            custom_fdiffs: Some(vec![300]),
            ..F::default()
        });
        for len in 3..full.len() {
            let r = parse(&full[..len], None);
            assert!(r.is_err(), "prefix of {len} bytes parsed");
        }
        assert!(parse(&full, None).is_ok());
        // More than 64 templates.
        let mut b = Bits::default();
        b.put(0, 24);
        b.put(0b10000, 5);
        b.put(0, 6);
        b.put(0, 5);
        for _ in 0..70 {
            b.put(0, 2);
        }
        b.put(0, 32);
        b.put(0, 32);
        assert_eq!(
            parse(&b.finish(), None).unwrap_err(),
            DdError::TooManyTemplates
        );
        // Arbitrary bytes never panic.
        let mut x = 0x1234_5678u32;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                v.push((x >> 24) as u8);
            }
            let _ = parse(&v, Some(&st));
            let _ = parse(&v, None);
        }
    }

    #[test]
    fn parser_keeps_structure_and_mask_and_ignores_stale_ones() {
        let s = l1t3();
        let mut p = DdParser::new();
        assert_eq!(p.parse(&[0x80, 0, 1]).unwrap_err(), DdError::NoStructure);
        let key = build(&F {
            sof: true,
            template_id: 0,
            frame_number: 10,
            structure: Some(&s),
            ..F::default()
        });
        p.parse(&key).unwrap();
        assert_eq!(p.generation(), 1);
        assert!(p.structure_taken());
        assert_eq!(p.active_decode_targets(), 0b111);
        // The same structure again is no new generation.
        p.parse(&key).unwrap();
        assert_eq!(p.generation(), 1);
        // A mask on frame 12 holds for later packets without one.
        let masked = build(&F {
            template_id: 1,
            frame_number: 12,
            mask: Some((0b001, 3)),
            ..F::default()
        });
        p.parse(&masked).unwrap();
        assert_eq!(p.active_decode_targets(), 0b001);
        p.parse(&[0x01, 0, 13]).unwrap();
        assert_eq!(p.active_decode_targets(), 0b001);
        assert!(!p.structure_taken());
        // A late packet (frame 11) with another mask does not roll it back...
        let late = build(&F {
            template_id: 1,
            frame_number: 11,
            mask: Some((0b011, 3)),
            ..F::default()
        });
        let dd = p.parse(&late).unwrap();
        assert_eq!(dd.active_decode_targets, Some(0b011));
        assert_eq!(p.active_decode_targets(), 0b001);
        // ...and neither does a late copy of the keyframe (retransmission).
        let mut other = l1t3();
        other.res = vec![(1280, 720)];
        let late_key = build(&F {
            sof: true,
            template_id: 0,
            frame_number: 9,
            structure: Some(&other),
            ..F::default()
        });
        let dd = p.parse(&late_key).unwrap();
        assert_eq!(
            dd.resolution,
            Some(RenderResolution {
                width: 1280,
                height: 720
            })
        );
        assert_eq!(p.generation(), 1);
        assert!(!p.structure_taken());
        assert_eq!(p.structure().unwrap().resolutions[0].width, 640);
        // A new structure across the 16-bit wrap is newer, and resets the mask.
        let mut p2 = DdParser::new();
        p2.parse(&build(&F {
            template_id: 0,
            frame_number: 65530,
            structure: Some(&s),
            mask: Some((0b001, 3)),
            ..F::default()
        }))
        .unwrap();
        assert_eq!(p2.active_decode_targets(), 0b001);
        p2.parse(&build(&F {
            template_id: 0,
            frame_number: 4,
            structure: Some(&other),
            ..F::default()
        }))
        .unwrap();
        assert_eq!(p2.generation(), 2);
        assert_eq!(p2.active_decode_targets(), 0b111);
    }

    #[test]
    fn rewrite_sets_the_mask_bit_exactly() {
        let s = l1t3();
        let (_, st) = parse(
            &build(&F {
                structure: Some(&s),
                ..F::default()
            }),
            None,
        )
        .unwrap();
        let st = st.unwrap();
        // S=1 E=1 template 1, frame 0x1234.
        let original = [0xc1, 0x12, 0x34];
        let (dd, _) = parse(&original, Some(&st)).unwrap();
        let mut out = Vec::new();
        rewrite(&original, &dd, None, Some(0b001), &mut out);
        // Flags 0 1 0 0 0 then the 3-bit mask 001.
        assert_eq!(out, vec![0xc1, 0x12, 0x34, 0b0100_0001]);
        let (back, _) = parse(&out, Some(&st)).unwrap();
        assert_eq!(back.active_decode_targets, Some(0b001));
        assert_eq!(back.frame_number, 0x1234);
        assert_eq!(
            (back.dtis, back.fdiffs, back.chain_fdiffs),
            (dd.dtis, dd.fdiffs, dd.chain_fdiffs)
        );
    }

    #[test]
    fn rewrite_keeps_structure_and_custom_fields() {
        let s = l3t3();
        let original = build(&F {
            sof: true,
            eof: false,
            template_id: 2,
            frame_number: 99,
            structure: Some(&s),
            mask: Some((0x1ff, 9)),
            custom_fdiffs: Some(vec![2, 40]),
            custom_chains: Some(vec![1, 2, 3]),
            ..F::default()
        });
        let (dd, st) = parse(&original, None).unwrap();
        let st = st.unwrap();
        let mut out = Vec::new();
        rewrite(&original, &dd, None, Some(0b000_000_111), &mut out);
        let (back, st2) = parse(&out, None).unwrap();
        assert_eq!(st2.unwrap(), st);
        assert_eq!(back.active_decode_targets, Some(0b111));
        assert_eq!(back.fdiffs.as_slice(), &[2, 40]);
        assert_eq!(back.chain_fdiffs.as_slice(), &[1, 2, 3]);
        assert_eq!(
            (back.spatial_id, back.temporal_id, back.frame_number),
            (0, 1, 99)
        );
        // Without a new mask the original mask is kept; the bytes are the same.
        rewrite(&original, &dd, None, None, &mut out);
        assert_eq!(out, original);

        // Attaching the structure to a mandatory-only packet.
        let plain = build(&F {
            sof: true,
            eof: true,
            template_id: 11,
            frame_number: 5,
            ..F::default()
        });
        let (dd, _) = parse(&plain, Some(&st)).unwrap();
        rewrite(&plain, &dd, Some(&st), None, &mut out);
        let (back, attached) = parse(&out, None).unwrap();
        assert_eq!(attached.unwrap(), st);
        assert_eq!(back.active_decode_targets, Some(0x1ff));
        assert_eq!(
            (back.spatial_id, back.temporal_id, back.frame_number),
            (2, 2, 5)
        );
        // The same with a mask: the structure comes first, then the mask.
        rewrite(&plain, &dd, Some(&st), Some(0b1), &mut out);
        let (back, attached) = parse(&out, None).unwrap();
        assert!(attached.is_some());
        assert_eq!(back.active_decode_targets, Some(0b1));
        // The result is exactly what the independent writer makes.
        let want = build(&F {
            sof: true,
            eof: true,
            template_id: 11,
            frame_number: 5,
            structure: Some(&s),
            mask: Some((0b1, 9)),
            ..F::default()
        });
        assert_eq!(out, want);
    }
}
