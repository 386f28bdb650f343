//! AudioSpecificConfig parsing on real byte strings.

use mediamesh_audio::aac::{object_type, SbrSignalling};
use mediamesh_audio::{AacDecoder, AudioError, AudioSpecificConfig};

#[test]
fn aac_lc_44100_stereo() {
    // What voaacenc, OBS and ffmpeg send for 44.1 kHz stereo.
    let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
    assert_eq!(asc.object_type, object_type::AAC_LC);
    assert_eq!(asc.signalled_object_type, object_type::AAC_LC);
    assert_eq!(asc.sampling_frequency_index, Some(4));
    assert_eq!(asc.sample_rate, 44100);
    assert_eq!(asc.channel_configuration, 2);
    assert_eq!(asc.channels(), Some(2));
    assert_eq!(asc.frame_length, 1024);
    assert_eq!(asc.sbr_present, None);
    assert_eq!(asc.sbr_signalling, SbrSignalling::None);
    assert!(!asc.is_he_aac());
    assert!(!asc.may_have_implicit_sbr());
    assert_eq!(asc.nominal_sample_rate(), 44100);
}

#[test]
fn aac_lc_48000_stereo() {
    let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
    assert_eq!(asc.object_type, 2);
    assert_eq!(asc.sample_rate, 48000);
    assert_eq!(asc.channels(), Some(2));
}

#[test]
fn aac_lc_22050_mono_may_be_implicit_he_aac() {
    let asc = AudioSpecificConfig::parse(&[0x13, 0x88]).unwrap();
    assert_eq!(asc.sample_rate, 22050);
    assert_eq!(asc.channels(), Some(1));
    assert_eq!(asc.sbr_present, None);
    assert!(asc.may_have_implicit_sbr());
}

#[test]
fn he_aac_explicit_hierarchical() {
    // HE-AAC v1, 44.1 kHz stereo: AOT 5, core 22.05 kHz, extension 44.1 kHz, core AOT 2.
    let asc = AudioSpecificConfig::parse(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
    assert_eq!(asc.signalled_object_type, object_type::SBR);
    assert_eq!(asc.object_type, object_type::AAC_LC);
    assert_eq!(asc.sample_rate, 22050);
    assert_eq!(asc.extension_sample_rate, Some(44100));
    assert_eq!(asc.nominal_sample_rate(), 44100);
    assert_eq!(asc.channels(), Some(2));
    assert_eq!(asc.sbr_signalling, SbrSignalling::Hierarchical);
    assert!(asc.is_he_aac());
    assert!(!asc.is_he_aac_v2());

    // The decoder runs the LC core at the core rate.
    let dec = AacDecoder::new(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
    assert_eq!(dec.sample_rate(), 22050);
    assert_eq!(dec.channels(), 2);
}

#[test]
fn he_aac_v2_explicit_hierarchical() {
    // HE-AAC v2, 48 kHz: AOT 29, core 24 kHz mono, extension 48 kHz.
    let asc = AudioSpecificConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
    assert_eq!(asc.signalled_object_type, object_type::PS);
    assert_eq!(asc.object_type, object_type::AAC_LC);
    assert_eq!(asc.sample_rate, 24000);
    assert_eq!(asc.extension_sample_rate, Some(48000));
    assert_eq!(asc.channels(), Some(1));
    assert!(asc.is_he_aac());
    assert!(asc.is_he_aac_v2());
    let dec = AacDecoder::new(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
    assert_eq!((dec.sample_rate(), dec.channels()), (24000, 1));
}

#[test]
fn he_aac_explicit_backward_compatible() {
    // LC 22.05 kHz stereo, then sync extension 0x2b7, AOT 5, sbrPresentFlag 1, 44.1 kHz.
    let asc = AudioSpecificConfig::parse(&[0x13, 0x90, 0x56, 0xe5, 0xa0]).unwrap();
    assert_eq!(asc.signalled_object_type, object_type::AAC_LC);
    assert_eq!(asc.sample_rate, 22050);
    assert_eq!(asc.sbr_signalling, SbrSignalling::BackwardCompatible);
    assert_eq!(asc.sbr_present, Some(true));
    assert_eq!(asc.extension_sample_rate, Some(44100));
    assert_eq!(asc.ps_present, None);
    assert!(!asc.may_have_implicit_sbr());
}

#[test]
fn backward_compatible_no_sbr_from_libavcodec() {
    // libavcodec's native AAC encoder (ffmpeg's default) writes LC 48 kHz stereo plus
    // the sync extension saying explicitly that there is no SBR.
    let asc = AudioSpecificConfig::parse(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
    assert_eq!(asc.object_type, 2);
    assert_eq!(asc.sample_rate, 48000);
    assert_eq!(asc.sbr_signalling, SbrSignalling::BackwardCompatible);
    assert_eq!(asc.sbr_present, Some(false));
    assert!(!asc.is_he_aac());
    assert_eq!(asc.nominal_sample_rate(), 48000);
    AacDecoder::new(&[0x11, 0x90, 0x56, 0xe5, 0x00]).unwrap();
}

#[test]
fn escaped_object_type_and_explicit_frequency() {
    // AOT 31 escape + 6 bits (42 = USAC), explicit 24-bit frequency 37800, stereo.
    // 11111 001010 1111 <24 bits 37800> 0010
    let mut bits = String::from("11111001010");
    bits += "1111";
    bits += &format!("{:024b}", 37800);
    bits += "0010";
    while bits.len() % 8 != 0 {
        bits.push('0');
    }
    let bytes: Vec<u8> = bits
        .as_bytes()
        .chunks(8)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
        .collect();
    let asc = AudioSpecificConfig::parse(&bytes).unwrap();
    assert_eq!(asc.object_type, 42);
    assert_eq!(asc.sampling_frequency_index, None);
    assert_eq!(asc.sample_rate, 37800);
    assert_eq!(asc.channel_configuration, 2);
    assert!(matches!(
        AacDecoder::new(&bytes),
        Err(AudioError::Unsupported(_))
    ));
}

#[test]
fn frame_length_960() {
    // LC 48 kHz stereo with frameLengthFlag = 1.
    let asc = AudioSpecificConfig::parse(&[0x11, 0x94]).unwrap();
    assert_eq!(asc.frame_length, 960);
    assert!(matches!(
        AacDecoder::new(&[0x11, 0x94]),
        Err(AudioError::Unsupported(_))
    ));
}

#[test]
fn malformed_configs_are_errors() {
    for bad in [
        &[][..],
        &[0x12][..],
        &[0x16, 0x90][..], /* sfi 13 */
        &[0x17, 0x90][..],
    ] {
        assert!(
            matches!(
                AudioSpecificConfig::parse(bad),
                Err(AudioError::InvalidConfig(_))
            ),
            "{bad:02x?}"
        );
        assert!(AacDecoder::new(bad).is_err());
    }
    // Explicit frequency cut short.
    assert!(AudioSpecificConfig::parse(&[0x17, 0x80, 0x00]).is_err());
}

#[test]
fn unsupported_layouts_are_errors() {
    // 5.1 (channel configuration 6) and channel configuration 0 (PCE).
    assert!(matches!(
        AacDecoder::new(&[0x11, 0xb0]),
        Err(AudioError::Unsupported(_))
    ));
    let pce = AudioSpecificConfig::parse(&[0x11, 0x80]).unwrap();
    assert_eq!(pce.channels(), None);
    assert!(matches!(
        AacDecoder::new(&[0x11, 0x80]),
        Err(AudioError::Unsupported(_))
    ));
    // AAC Main.
    assert!(matches!(
        AacDecoder::new(&[0x0a, 0x10]),
        Err(AudioError::Unsupported(_))
    ));
}
