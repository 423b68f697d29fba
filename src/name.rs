//! File names as phones send them: normalised into one safe, relative form
//! (or refused), and classified — which device a name belongs to, and whether
//! its content is specific to the cluster that signed it.
//!
//! Normalising: `\` becomes `/`; one leading `/` is dropped (a 7942 asks for
//! `/mk-sip.jar`), so an absolute path is read relative to the root as
//! `tftpd -s` does; empty and `.` components are dropped. Refused: `..`
//! components, NUL and other control characters, UNC (`//host`) and drive
//! (`C:`) prefixes, a leading `~`, and names over [`MAX_NAME_LEN`] bytes.

use std::borrow::Cow;

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name is refused. These names are never looked up anywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty file name")]
    Empty,
    #[error("file name longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("control character in file name")]
    ControlCharacter,
    #[error("'..' in file name")]
    ParentDirectory,
    #[error("file name is a network or drive path")]
    ForeignRoot,
}

/// Normalises a requested name into a relative path with `/` separators;
/// borrowed when the name is its own normal form (the common case).
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, NameError> {
    if raw.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if is_plain(raw) {
        // Nothing to unify or drop: the common case, without the splitting.
        return Ok(Cow::Borrowed(raw));
    }
    normalise_components(raw).map(Cow::Owned)
}

/// [`normalise`] for any name: unify the separators, drop empty and `.`
/// components, refuse what escapes the root.
fn normalise_components(raw: &str) -> Result<String, NameError> {
    if raw.chars().any(|c| c.is_control()) {
        return Err(NameError::ControlCharacter);
    }
    let unified = raw.replace('\\', "/");
    if unified.starts_with("//") || unified.starts_with('~') || has_drive_prefix(&unified) {
        return Err(NameError::ForeignRoot);
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(NameError::ParentDirectory),
            part => parts.push(part),
        }
    }
    let Some(first) = parts.first() else {
        return Err(NameError::Empty);
    };
    // Checked again once leading `/` and `./` are gone: `/C:\x` and
    // `/./~root` must not reach a cluster as `C:/x` and `~root`.
    if first.starts_with('~') || has_drive_prefix(first) {
        return Err(NameError::ForeignRoot);
    }
    Ok(parts.join("/"))
}

/// A name that is its own normal form: one component of printable ASCII,
/// not `.` or `..`, no `~` or drive first.
fn is_plain(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
        && name != "."
        && name != ".."
        && !name.starts_with('~')
        && !has_drive_prefix(name)
}

fn has_drive_prefix(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// What tftproxy knows about a (normalised) name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The device the name belongs to (`SEP001122AABBCC`, `ATA…`, `CSFJOHN`,
    /// or a bare MAC for other vendors), if any.
    pub device: Option<String>,
    /// Signed or trust content that differs per cluster even without a MAC
    /// (ITL/CTL files, `*.sgn`, ring lists, locales, `SK…`, `DR…`): a phone
    /// must get its home cluster's copy.
    pub cluster_specific: bool,
}

/// Classifies a normalised name.
pub fn classify(name: &str) -> Classified {
    let lower = name.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    let stem = base
        .strip_suffix(".enc.sgn")
        .or_else(|| base.strip_suffix(".sgn"))
        .unwrap_or(base);
    let device = device_key(stem);
    let cluster_specific = device.is_none()
        && (base.ends_with(".sgn")
            || matches!(base, "itlfile.tlv" | "ctlfile.tlv")
            || base.contains("ringlist")
            || is_uuid_file(stem, "sk")
            || is_uuid_file(stem, "dr")
            || (lower.contains('/') && !lower.starts_with("desktops/")));
    Classified {
        device,
        cluster_specific,
    }
}

fn is_hex12(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn mac_key(prefix: &str, hex: &str) -> Option<String> {
    (is_hex12(hex) && hex != "000000000000")
        .then(|| format!("{prefix}{}", hex.to_ascii_uppercase()))
}

/// `SK<uuid>…` / `DR<uuid>…`: a prefix followed by a UUID-like run.
fn is_uuid_file(stem: &str, prefix: &str) -> bool {
    stem.strip_prefix(prefix).is_some_and(|rest| {
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        id.len() >= 32
    })
}

/// The device key of a lower-case base name without `.sgn` / `.enc.sgn`.
fn device_key(stem: &str) -> Option<String> {
    // Cisco: configuration and per-device trust lists.
    for suffix in [".cnf.xml", ".cnf"] {
        if let Some(rest) = stem.strip_suffix(suffix) {
            if let Some(hex) = rest
                .strip_prefix("sep")
                .or_else(|| rest.strip_prefix("sip"))
            {
                if let Some(key) = mac_key("SEP", hex) {
                    return Some(key);
                }
            }
        }
    }
    for prefix in ["ctlsep", "itlsep", "ext_itlsep"] {
        if let Some(hex) = stem
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".tlv"))
        {
            return mac_key("SEP", hex);
        }
    }
    if let Some(hex) = stem
        .strip_prefix("ata")
        .and_then(|r| r.strip_suffix(".cnf.xml"))
    {
        return mac_key("ATA", hex);
    }
    // 7902/7905/7912: ff/ld/gk + MAC, optionally with an extension.
    for prefix in ["ff", "ld", "gk"] {
        if let Some(rest) = stem.strip_prefix(prefix) {
            let hex = rest.split('.').next().unwrap_or(rest);
            if let Some(key) = mac_key("SEP", hex) {
                return Some(key);
            }
        }
    }
    // Jabber and other soft clients: a device name of up to 15 characters.
    if let Some(name) = stem.strip_suffix(".cnf.xml") {
        for prefix in ["csf", "tct", "bot", "tab"] {
            if name.starts_with(prefix)
                && name.len() > prefix.len()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Some(name.to_ascii_uppercase());
            }
        }
    }
    // Polycom <mac>.cfg / <mac>-phone.cfg, Yealink <mac>.cfg.
    if let Some(rest) = stem.strip_suffix(".cfg") {
        let hex = rest.strip_suffix("-phone").unwrap_or(rest);
        if let Some(key) = mac_key("", hex) {
            return Some(key);
        }
    }
    // Grandstream cfg<mac>[.xml].
    if let Some(rest) = stem.strip_prefix("cfg") {
        let hex = rest.strip_suffix(".xml").unwrap_or(rest);
        if let Some(key) = mac_key("", hex) {
            return Some(key);
        }
    }
    // Snom snom<model>-<MAC>.htm.
    if let Some(rest) = stem
        .strip_prefix("snom")
        .and_then(|r| r.strip_suffix(".htm"))
    {
        if let Some((_, hex)) = rest.rsplit_once('-') {
            return mac_key("", hex);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_spellings_normalise_to_one_name() {
        assert_eq!(normalise("/mk-sip.jar").unwrap(), "mk-sip.jar");
        assert_eq!(
            normalise("Desktops\\320x212x12\\List.xml").unwrap(),
            "Desktops/320x212x12/List.xml"
        );
        assert_eq!(normalise("./a//b").unwrap(), "a/b");
        assert_eq!(normalise("/etc/passwd").unwrap(), "etc/passwd");
    }

    proptest::proptest! {
        #[test]
        fn a_plain_name_normalises_as_the_general_path_would(raw in "[a-zA-Z0-9./\\\\~:_ -]{0,8}") {
            proptest::prop_assert_eq!(normalise(&raw).map(Cow::into_owned), normalise_components(&raw));
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for (name, error) in [
            ("../etc/passwd", NameError::ParentDirectory),
            ("a/../../b", NameError::ParentDirectory),
            ("..\\..\\windows", NameError::ParentDirectory),
            ("a\0b", NameError::ControlCharacter),
            ("a\nb", NameError::ControlCharacter),
            ("//server/share", NameError::ForeignRoot),
            ("\\\\server\\share", NameError::ForeignRoot),
            ("C:\\boot.ini", NameError::ForeignRoot),
            ("~root/.ssh", NameError::ForeignRoot),
            ("/C:\\boot.ini", NameError::ForeignRoot),
            ("\\C:\\boot.ini", NameError::ForeignRoot),
            ("./C:/boot.ini", NameError::ForeignRoot),
            ("/~root/.ssh/id_rsa", NameError::ForeignRoot),
            ("/./~root", NameError::ForeignRoot),
            ("/", NameError::Empty),
            ("", NameError::Empty),
        ] {
            assert_eq!(normalise(name), Err(error), "{name:?}");
        }
        assert_eq!(normalise(&"a".repeat(256)), Err(NameError::TooLong));
    }

    #[test]
    fn device_names_yield_their_device() {
        for (name, key) in [
            ("SEP001122AABBCC.cnf.xml", "SEP001122AABBCC"),
            ("sep001122aabbcc.cnf.xml.sgn", "SEP001122AABBCC"),
            ("SEP001122AABBCC.cnf.xml.enc.sgn", "SEP001122AABBCC"),
            ("CTLSEP001122AABBCC.tlv", "SEP001122AABBCC"),
            ("ITLSEP001122AABBCC.tlv", "SEP001122AABBCC"),
            ("ext_ITLSEP001122AABBCC.tlv", "SEP001122AABBCC"),
            ("SIP001122AABBCC.cnf", "SEP001122AABBCC"),
            ("SEP001122AABBCC.cnf", "SEP001122AABBCC"),
            ("ff001122aabbcc", "SEP001122AABBCC"),
            ("gk001122aabbcc.txt", "SEP001122AABBCC"),
            ("ATA001122AABBCC.cnf.xml", "ATA001122AABBCC"),
            ("CSFJSMITH.cnf.xml", "CSFJSMITH"),
            ("TCTjsmith.cnf.xml", "TCTJSMITH"),
            ("0004f2aabbcc.cfg", "0004F2AABBCC"),
            ("0004f2aabbcc-phone.cfg", "0004F2AABBCC"),
            ("cfg000b82aabbcc.xml", "000B82AABBCC"),
            ("snom760-000413AABBCC.htm", "000413AABBCC"),
        ] {
            assert_eq!(classify(name).device.as_deref(), Some(key), "{name}");
        }
    }

    #[test]
    fn common_and_cluster_specific_names() {
        for name in [
            "ITLFile.tlv",
            "CTLFile.tlv",
            "Ringlist.xml.sgn",
            "Ringlist-wb.xml",
            "SKa1b2c3d4-e5f6-7890-abcd-ef0123456789.xml.sgn",
            "DRa1b2c3d4-e5f6-7890-abcd-ef0123456789.xml",
            "English_United_States/mk-sip.jar",
            "United_States/g3-tones.xml",
        ] {
            let c = classify(name);
            assert!(c.cluster_specific && c.device.is_none(), "{name}");
        }
        for name in [
            "XMLDefault.cnf.xml",
            "SEPDefault.cnf",
            "OS79XX.TXT",
            "AppDialRules.xml",
            "000000000000.cfg",
            "sip88xx.14-2-1-0101-12.loads",
            "Desktops/320x212x12/List.xml",
            "SEP0011.cnf.xml",
        ] {
            assert_eq!(
                classify(name),
                Classified {
                    device: None,
                    cluster_specific: false
                },
                "{name}"
            );
        }
    }
}
