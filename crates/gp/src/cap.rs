//! Java Card CAP files (Java Card Virtual Machine Specification 3.0.5 chapter 6) and
//! the load files made from them.
//!
//! A CAP file is a JAR (ZIP) whose `…/javacard/*.cap` entries each hold one component:
//! `u1 tag, u2 size, u1 info[size]` (JCVM §6.1). The host reads it with
//! [`CapFile::from_bytes`] and sends [`CapFile::load_file_data_block`], the components
//! concatenated in the order of JCVM §6.2 (Header, Directory, Import, Applet, Class,
//! Method, StaticField, Export, ConstantPool, RefLocation, Descriptor; Debug is never
//! loaded). The card only receives that concatenation and reads it with
//! [`LoadFile::parse`].
//!
//! Only the compact CAP format is read (CAP versions 2.1 to 2.3); the extended format
//! of Java Card 3.1 (header flag `ACC_EXTENDED`) is reported as unsupported.

use core::fmt;
use std::collections::BTreeMap;
use std::io::Read;

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use thiserror::Error;

use crate::aid::Aid;

/// A component tag (JCVM 3.0.5 Table 6-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentTag {
    /// 1.
    Header,
    /// 2.
    Directory,
    /// 3.
    Applet,
    /// 4.
    Import,
    /// 5.
    ConstantPool,
    /// 6.
    Class,
    /// 7.
    Method,
    /// 8.
    StaticField,
    /// 9.
    RefLocation,
    /// 10.
    Export,
    /// 11.
    Descriptor,
    /// 12: never part of a load file.
    Debug,
    /// 13 (Java Card 3.1): static resources.
    StaticResources,
}

impl ComponentTag {
    /// Every tag, in tag order.
    pub const ALL: [ComponentTag; 13] = [
        Self::Header,
        Self::Directory,
        Self::Applet,
        Self::Import,
        Self::ConstantPool,
        Self::Class,
        Self::Method,
        Self::StaticField,
        Self::RefLocation,
        Self::Export,
        Self::Descriptor,
        Self::Debug,
        Self::StaticResources,
    ];

    /// The tag byte.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Header => 1,
            Self::Directory => 2,
            Self::Applet => 3,
            Self::Import => 4,
            Self::ConstantPool => 5,
            Self::Class => 6,
            Self::Method => 7,
            Self::StaticField => 8,
            Self::RefLocation => 9,
            Self::Export => 10,
            Self::Descriptor => 11,
            Self::Debug => 12,
            Self::StaticResources => 13,
        }
    }

    /// The component for a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.tag() == tag)
    }

    /// The component's name, which is also its file name without `.cap` (JCVM §6.2).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Header => "Header",
            Self::Directory => "Directory",
            Self::Applet => "Applet",
            Self::Import => "Import",
            Self::ConstantPool => "ConstantPool",
            Self::Class => "Class",
            Self::Method => "Method",
            Self::StaticField => "StaticField",
            Self::RefLocation => "RefLocation",
            Self::Export => "Export",
            Self::Descriptor => "Descriptor",
            Self::Debug => "Debug",
            Self::StaticResources => "StaticResources",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ComponentTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The order components are sent in (JCVM 3.0.5 §6.2; the order GlobalPlatformPro and
/// pySim use). Descriptor is optional in the load file; StaticResources (JC 3.1) follows it.
pub const LOAD_ORDER: [ComponentTag; 12] = [
    ComponentTag::Header,
    ComponentTag::Directory,
    ComponentTag::Import,
    ComponentTag::Applet,
    ComponentTag::Class,
    ComponentTag::Method,
    ComponentTag::StaticField,
    ComponentTag::Export,
    ComponentTag::ConstantPool,
    ComponentTag::RefLocation,
    ComponentTag::Descriptor,
    ComponentTag::StaticResources,
];

/// Why a CAP file or load file could not be read. Offsets are from the first byte of
/// the component (its tag), or of the load file for [`CapError::LoadFile`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CapError {
    /// The archive itself cannot be read.
    #[error("CAP file is not a readable ZIP/JAR archive: {0}")]
    Zip(String),
    /// A mandatory component is absent.
    #[error("CAP file has no {0} component")]
    MissingComponent(ComponentTag),
    /// A component appears twice.
    #[error("{component} component appears twice ({first} and {second})")]
    DuplicateComponent {
        /// The component.
        component: ComponentTag,
        /// Where it was found first.
        first: String,
        /// Where it was found again.
        second: String,
    },
    /// Components of more than one package in one archive.
    #[error("CAP file holds components of several packages: '{0}' and '{1}'")]
    MultiplePackages(String, String),
    /// A component's content is wrong.
    #[error("{component} component, offset {offset}: {reason}")]
    Malformed {
        /// The component.
        component: ComponentTag,
        /// Offset from the component's tag byte.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The concatenated components (load file data block) are wrong.
    #[error("load file data block, offset {offset}: {reason}")]
    LoadFile {
        /// Offset from the start of the load file data block.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A valid but unsupported CAP variant.
    #[error("unsupported CAP file: {0}")]
    Unsupported(String),
}

type CapResult<T> = core::result::Result<T, CapError>;

/// A bounds-checked reader over one component, reporting errors against it.
struct Comp<'a> {
    buf: &'a [u8],
    pos: usize,
    tag: ComponentTag,
}

impl<'a> Comp<'a> {
    fn malformed(&self, offset: usize, reason: impl Into<String>) -> CapError {
        CapError::Malformed {
            component: self.tag,
            offset,
            reason: reason.into(),
        }
    }
    fn bytes(&mut self, n: usize, field: &str) -> CapResult<&'a [u8]> {
        let rest = self.buf.len() - self.pos;
        if rest < n {
            return Err(self.malformed(
                self.pos,
                format!("truncated reading {field}: {n} byte(s) needed, {rest} left"),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, field: &str) -> CapResult<u8> {
        Ok(self.bytes(1, field)?[0])
    }
    fn u16(&mut self, field: &str) -> CapResult<u16> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn aid(&mut self, field: &str) -> CapResult<Aid> {
        let at = self.pos;
        let n = self.u8(field)?;
        let b = self.bytes(usize::from(n), field)?;
        Aid::new(b).map_err(|_| self.malformed(at, format!("{field} length {n} is outside 5..=16")))
    }
    fn package(&mut self, field: &str) -> CapResult<PackageRef> {
        let minor = self.u8(field)?;
        let major = self.u8(field)?;
        let aid = self.aid(field)?;
        Ok(PackageRef { aid, major, minor })
    }
    /// Reads `tag u2 size` and checks both against the buffer.
    fn open(buf: &'a [u8], tag: ComponentTag) -> CapResult<Self> {
        let mut c = Self { buf, pos: 0, tag };
        let t = c.u8("tag")?;
        if t != tag.tag() {
            return Err(c.malformed(0, format!("tag is {t}, expected {}", tag.tag())));
        }
        let size = usize::from(c.u16("size")?);
        if size != buf.len() - 3 {
            return Err(c.malformed(
                1,
                format!(
                    "size field says {size} bytes, component has {}",
                    buf.len() - 3
                ),
            ));
        }
        Ok(c)
    }
}

/// A package reference: AID and version (`package_info`, JCVM §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackageRef {
    /// Package AID.
    pub aid: Aid,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}.{}", self.aid, self.major, self.minor)
    }
}

/// An applet of the package: its AID and install method offset (Applet component, JCVM §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppletInfo {
    /// Applet (executable module) AID.
    pub aid: Aid,
    /// Offset of its `install` method in the Method component.
    pub install_method_offset: u16,
}

/// Header flags (JCVM §6.4 Table 6-3).
pub mod flags {
    /// `ACC_INT`: the package uses the `int` type.
    pub const ACC_INT: u8 = 0x01;
    /// `ACC_EXPORT`: the package has an Export component.
    pub const ACC_EXPORT: u8 = 0x02;
    /// `ACC_APPLET`: the package has an Applet component.
    pub const ACC_APPLET: u8 = 0x04;
    /// `ACC_EXTENDED` (CAP 2.3): extended format.
    pub const ACC_EXTENDED: u8 = 0x08;
}

/// What the Header, Applet and Import components say about a package; shared by
/// [`CapFile`] and [`LoadFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// CAP format version (major, minor), e.g. (2, 2).
    pub cap_version: (u8, u8),
    /// Header flags ([`flags`]).
    pub flags: u8,
    /// The package AID and version.
    pub package: PackageRef,
    /// The package name (`a/b/c`), present from CAP 2.2 when the converter wrote it.
    pub package_name: Option<String>,
    /// Applets, from the Applet component (empty for a library).
    pub applets: Vec<AppletInfo>,
    /// Imported packages, from the Import component.
    pub imports: Vec<PackageRef>,
}

/// Header component (JCVM §6.4).
fn parse_header(buf: &[u8]) -> CapResult<(u8, u8, u8, PackageRef, Option<String>)> {
    let mut c = Comp::open(buf, ComponentTag::Header)?;
    let magic = c.bytes(4, "magic")?;
    if magic != [0xDE, 0xCA, 0xFF, 0xED] {
        return Err(c.malformed(
            3,
            format!("magic is {}, expected DECAFFED", apdu::hex(magic)),
        ));
    }
    let minor = c.u8("CAP minor version")?;
    let major = c.u8("CAP major version")?;
    if major != 2 || minor > 3 {
        return Err(CapError::Unsupported(format!(
            "CAP format version {major}.{minor}"
        )));
    }
    let fl = c.u8("flags")?;
    if fl & flags::ACC_EXTENDED != 0 {
        return Err(CapError::Unsupported(
            "extended CAP format (ACC_EXTENDED)".into(),
        ));
    }
    let package = c.package("package_info")?;
    let mut name = None;
    if minor >= 2 && c.pos < c.buf.len() {
        let at = c.pos;
        let n = c.u8("package name length")?;
        let raw = c.bytes(usize::from(n), "package name")?;
        if n > 0 {
            let s = core::str::from_utf8(raw)
                .map_err(|_| c.malformed(at + 1, "package name is not UTF-8"))?;
            name = Some(s.to_string());
        }
    }
    if c.pos != c.buf.len() {
        return Err(c.malformed(
            c.pos,
            format!("{} unexpected trailing byte(s)", c.buf.len() - c.pos),
        ));
    }
    Ok((major, minor, fl, package, name))
}

/// Applet component (JCVM §6.5).
fn parse_applets(buf: &[u8]) -> CapResult<Vec<AppletInfo>> {
    let mut c = Comp::open(buf, ComponentTag::Applet)?;
    let count = c.u8("applet count")?;
    let mut v = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let aid = c.aid("applet AID")?;
        let install_method_offset = c.u16("install method offset")?;
        v.push(AppletInfo {
            aid,
            install_method_offset,
        });
    }
    if c.pos != c.buf.len() {
        return Err(c.malformed(
            c.pos,
            format!("{} unexpected trailing byte(s)", c.buf.len() - c.pos),
        ));
    }
    Ok(v)
}

/// Import component (JCVM §6.6).
fn parse_imports(buf: &[u8]) -> CapResult<Vec<PackageRef>> {
    let mut c = Comp::open(buf, ComponentTag::Import)?;
    let count = c.u8("import count")?;
    let mut v = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        v.push(c.package("imported package_info")?);
    }
    if c.pos != c.buf.len() {
        return Err(c.malformed(
            c.pos,
            format!("{} unexpected trailing byte(s)", c.buf.len() - c.pos),
        ));
    }
    Ok(v)
}

impl PackageInfo {
    fn from_components<'a>(get: impl Fn(ComponentTag) -> Option<&'a [u8]>) -> CapResult<Self> {
        let header =
            get(ComponentTag::Header).ok_or(CapError::MissingComponent(ComponentTag::Header))?;
        let (major, minor, fl, package, package_name) = parse_header(header)?;
        if get(ComponentTag::Directory).is_none() {
            return Err(CapError::MissingComponent(ComponentTag::Directory));
        }
        let applets = match get(ComponentTag::Applet) {
            Some(a) => parse_applets(a)?,
            None => Vec::new(),
        };
        let imports = match get(ComponentTag::Import) {
            Some(i) => parse_imports(i)?,
            None => return Err(CapError::MissingComponent(ComponentTag::Import)),
        };
        Ok(Self {
            cap_version: (major, minor),
            flags: fl,
            package,
            package_name,
            applets,
            imports,
        })
    }
}

/// Hash algorithms for the Load File Data Block Hash (GP 2.3.1 §C.2, §11.5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1 (20 bytes; GP 2.1.1 / 2.2 default).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// A CAP file read from its JAR/ZIP archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapFile {
    components: BTreeMap<ComponentTag, Vec<u8>>,
    info: PackageInfo,
    /// Directory of the components inside the archive (`org/example/javacard/`).
    pub path: String,
}

/// Largest possible component: tag, size and 65535 bytes of info.
const MAX_COMPONENT: u64 = 3 + 0xFFFF;

impl CapFile {
    /// Reads a CAP file. The components must be under one `…/javacard/` directory;
    /// Header, Directory and Import are mandatory; every component's tag and size field
    /// are checked, and Header, Applet and Import are decoded.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CapError> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| CapError::Zip(e.to_string()))?;
        let mut components: BTreeMap<ComponentTag, Vec<u8>> = BTreeMap::new();
        let mut names: BTreeMap<ComponentTag, String> = BTreeMap::new();
        let mut dir: Option<String> = None;
        for i in 0..zip.len() {
            let mut f = zip
                .by_index(i)
                .map_err(|e| CapError::Zip(format!("entry {i}: {e}")))?;
            if f.is_dir() {
                continue;
            }
            let name = f
                .name()
                .map_err(|e| CapError::Zip(format!("entry {i}: {e}")))?
                .into_owned();
            let Some((parent, file)) = name.rsplit_once('/') else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".cap") else {
                continue;
            };
            if !(parent == "javacard" || parent.ends_with("/javacard")) {
                continue;
            }
            let Some(tag) = ComponentTag::from_name(stem) else {
                continue;
            };
            let parent = format!("{parent}/");
            match &dir {
                Some(d) if *d != parent => {
                    return Err(CapError::MultiplePackages(d.clone(), parent))
                }
                _ => dir = Some(parent),
            }
            if f.size() > MAX_COMPONENT {
                return Err(CapError::Malformed {
                    component: tag,
                    offset: 0,
                    reason: format!("{} bytes is more than a component can hold", f.size()),
                });
            }
            let mut data = Vec::with_capacity(f.size() as usize);
            (&mut f)
                .take(MAX_COMPONENT + 1)
                .read_to_end(&mut data)
                .map_err(|e| CapError::Zip(format!("{name}: {e}")))?;
            if data.len() as u64 > MAX_COMPONENT {
                return Err(CapError::Malformed {
                    component: tag,
                    offset: 0,
                    reason: "more than 65538 bytes after decompression".into(),
                });
            }
            // Every component: u1 tag, u2 size, info[size] (JCVM §6.1).
            Comp::open(&data, tag)?;
            if let Some(first) = names.get(&tag) {
                return Err(CapError::DuplicateComponent {
                    component: tag,
                    first: first.clone(),
                    second: name,
                });
            }
            names.insert(tag, name);
            components.insert(tag, data);
        }
        let info = PackageInfo::from_components(|t| components.get(&t).map(Vec::as_slice))?;
        Ok(Self {
            components,
            info,
            path: dir.unwrap_or_default(),
        })
    }

    /// The package: AID and version.
    pub fn package(&self) -> PackageRef {
        self.info.package
    }
    /// The package AID (the load file AID).
    pub fn package_aid(&self) -> Aid {
        self.info.package.aid
    }
    /// The package version (major, minor).
    pub fn version(&self) -> (u8, u8) {
        (self.info.package.major, self.info.package.minor)
    }
    /// The package name, when the Header component has one.
    pub fn package_name(&self) -> Option<&str> {
        self.info.package_name.as_deref()
    }
    /// The applets.
    pub fn applets(&self) -> &[AppletInfo] {
        &self.info.applets
    }
    /// The applet AIDs.
    pub fn applet_aids(&self) -> Vec<Aid> {
        self.info.applets.iter().map(|a| a.aid).collect()
    }
    /// The imported packages.
    pub fn imports(&self) -> &[PackageRef] {
        &self.info.imports
    }
    /// Everything decoded from Header, Applet and Import.
    pub fn info(&self) -> &PackageInfo {
        &self.info
    }
    /// A component's bytes (tag, size, info), if present.
    pub fn component(&self, tag: ComponentTag) -> Option<&[u8]> {
        self.components.get(&tag).map(Vec::as_slice)
    }
    /// Tags of the components present, in tag order.
    pub fn component_tags(&self) -> Vec<ComponentTag> {
        self.components.keys().copied().collect()
    }

    /// The load file data block with the Descriptor component (as pySim sends it):
    /// components in [`LOAD_ORDER`], Debug excluded.
    pub fn load_file_data_block(&self) -> Vec<u8> {
        self.load_file_data_block_with(true)
    }

    /// The load file data block, with or without the Descriptor component.
    pub fn load_file_data_block_with(&self, include_descriptor: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.components.values().map(Vec::len).sum());
        for tag in LOAD_ORDER {
            if tag == ComponentTag::Descriptor && !include_descriptor {
                continue;
            }
            if let Some(c) = self.components.get(&tag) {
                v.extend_from_slice(c);
            }
        }
        v
    }

    /// The Load File Data Block Hash for INSTALL \[for load\] over
    /// [`CapFile::load_file_data_block`] (with Descriptor).
    pub fn load_file_hash(&self, alg: HashAlgorithm) -> Vec<u8> {
        alg.digest(&self.load_file_data_block())
    }

    /// Size in bytes of the load file data block (with Descriptor): the code size on card.
    pub fn code_size(&self) -> usize {
        self.load_file_data_block().len()
    }
}

/// A load file data block as the card receives it (the concatenated components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFile {
    /// Header, Applet and Import content.
    pub info: PackageInfo,
    /// Components present, in the order received, with their offset in the block.
    pub components: Vec<(ComponentTag, usize)>,
}

impl LoadFile {
    /// Reads a load file data block: a sequence of components, Header first, each tag at
    /// most once, Debug not allowed; Header, Directory and Import mandatory.
    pub fn parse(data: &[u8]) -> Result<Self, CapError> {
        let mut pos = 0;
        let mut comps: Vec<(ComponentTag, usize, usize)> = Vec::new();
        while pos < data.len() {
            let rest = &data[pos..];
            if rest.len() < 3 {
                return Err(CapError::LoadFile {
                    offset: pos,
                    reason: format!("{} byte(s) left, a component header needs 3", rest.len()),
                });
            }
            let tag = ComponentTag::from_tag(rest[0]).ok_or_else(|| CapError::LoadFile {
                offset: pos,
                reason: format!("unknown component tag {}", rest[0]),
            })?;
            if tag == ComponentTag::Debug {
                return Err(CapError::LoadFile {
                    offset: pos,
                    reason: "Debug component is not loadable".into(),
                });
            }
            if comps.is_empty() && tag != ComponentTag::Header {
                return Err(CapError::LoadFile {
                    offset: pos,
                    reason: format!("first component is {tag}, not Header"),
                });
            }
            if comps.iter().any(|(t, _, _)| *t == tag) {
                return Err(CapError::LoadFile {
                    offset: pos,
                    reason: format!("{tag} component appears twice"),
                });
            }
            let size = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            if rest.len() < 3 + size {
                return Err(CapError::LoadFile {
                    offset: pos,
                    reason: format!(
                        "{tag} component declares {size} bytes but only {} remain",
                        rest.len() - 3
                    ),
                });
            }
            comps.push((tag, pos, 3 + size));
            pos += 3 + size;
        }
        let get = |t: ComponentTag| {
            comps
                .iter()
                .find(|c| c.0 == t)
                .map(|&(_, at, n)| &data[at..at + n])
        };
        let info = PackageInfo::from_components(get)?;
        Ok(Self {
            info,
            components: comps.iter().map(|&(t, at, _)| (t, at)).collect(),
        })
    }

    /// The package AID (load file AID).
    pub fn package_aid(&self) -> Aid {
        self.info.package.aid
    }
    /// The package version (major, minor).
    pub fn version(&self) -> (u8, u8) {
        (self.info.package.major, self.info.package.minor)
    }
    /// The applet AIDs (executable modules).
    pub fn applet_aids(&self) -> Vec<Aid> {
        self.info.applets.iter().map(|a| a.aid).collect()
    }
    /// The imported packages.
    pub fn imports(&self) -> &[PackageRef] {
        &self.info.imports
    }
}

/// Test helpers (feature `testing`, off by default): CAP files built in memory, for tests
/// and `cardwright bench`. The content is structurally valid (tags, sizes, Header, Applet,
/// Import) but not executable.
#[cfg(feature = "testing")]
pub mod testing {
    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::ComponentTag;

    fn component(tag: ComponentTag, info: &[u8]) -> Vec<u8> {
        let mut v = vec![tag.tag()];
        v.extend_from_slice(&(info.len() as u16).to_be_bytes());
        v.extend_from_slice(info);
        v
    }

    /// Writes `components` (tag, full component bytes) as a CAP archive under
    /// `path/javacard/`, stored (uncompressed) or deflated, in the given order.
    pub fn cap_archive(
        path: &str,
        components: &[(ComponentTag, Vec<u8>)],
        deflate: bool,
    ) -> Vec<u8> {
        let mut w = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let method = if deflate {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let opts = SimpleFileOptions::default().compression_method(method);
        let manifest = b"Manifest-Version: 1.0\r\nCreated-By: cardwright gp::cap::testing\r\n\r\n";
        let write = |w: &mut ZipWriter<_>, name: String, data: &[u8]| {
            // Writing into a Vec cannot fail for these sizes.
            w.start_file(name, opts).ok();
            w.write_all(data).ok();
        };
        write(&mut w, "META-INF/MANIFEST.MF".into(), manifest);
        for (tag, bytes) in components {
            write(&mut w, format!("{path}/javacard/{}.cap", tag.name()), bytes);
        }
        w.finish()
            .map(std::io::Cursor::into_inner)
            .unwrap_or_default()
    }

    /// The components of a small package `A00000055501` v1.0 (name `com/example/synth`)
    /// with one applet `A0000005550101`, importing `java/lang` (A0000000620001 v1.0) and
    /// `javacard/framework` (A0000000620101 v1.2), whose Method component is padded so
    /// that the load file data block is at least `size` bytes (at most 65535 bytes of
    /// padding per component; larger sizes also pad StaticField, ConstantPool,
    /// RefLocation and Descriptor).
    pub fn synthetic_components(size: usize) -> Vec<(ComponentTag, Vec<u8>)> {
        use ComponentTag::*;
        let pkg = [0xA0, 0x00, 0x00, 0x05, 0x55, 0x01];
        let applet = [0xA0, 0x00, 0x00, 0x05, 0x55, 0x01, 0x01];
        let name = b"com/example/synth";
        let mut header = vec![
            0xDE,
            0xCA,
            0xFF,
            0xED,
            0x02,
            0x02,
            0x04,
            0x00,
            0x01,
            pkg.len() as u8,
        ];
        header.extend_from_slice(&pkg);
        header.push(name.len() as u8);
        header.extend_from_slice(name);
        let mut applets = vec![1, applet.len() as u8];
        applets.extend_from_slice(&applet);
        applets.extend_from_slice(&[0x00, 0x01]);
        let mut imports = vec![2];
        imports.extend_from_slice(&[0x00, 0x01, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x00, 0x01]);
        imports.extend_from_slice(&[0x02, 0x01, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x01, 0x01]);
        let directory = vec![0u8; 31];
        let mut comps: Vec<(ComponentTag, Vec<u8>)> = vec![
            (Header, header),
            (Directory, directory),
            (Import, imports),
            (Applet, applets),
            (Class, vec![0x00; 12]),
            (Method, vec![0x00, 0x18, 0x8C, 0x7A]),
            (StaticField, vec![0x00; 10]),
            (ConstantPool, vec![0x00, 0x00]),
            (RefLocation, vec![0x00, 0x00, 0x00, 0x00]),
            (Descriptor, vec![0x00; 4]),
        ];
        let mut total: usize = comps.iter().map(|(_, i)| i.len() + 3).sum();
        for idx in [5, 6, 7, 8, 9] {
            if total >= size {
                break;
            }
            let info = &mut comps[idx].1;
            let add = (size - total).min(0xFFFF - info.len());
            info.resize(info.len() + add, 0xA5);
            total += add;
        }
        comps
            .into_iter()
            .map(|(t, info)| (t, component(t, &info)))
            .collect()
    }

    /// A synthetic CAP file whose load file data block is at least `size` bytes (see
    /// [`synthetic_components`]); for tests and benchmarks only.
    pub fn synthetic_cap(size: usize) -> Vec<u8> {
        cap_archive("com/example/synth", &synthetic_components(size), true)
    }
}
