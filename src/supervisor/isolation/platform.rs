//! `runtimePlatform` on this host: the image platform a task pulls (`cpuArchitecture`), and
//! whether this kernel can run it — natively, or through a binfmt_misc handler (Debian's
//! `qemu-user-static`) for a foreign architecture. Checked before anything of the task
//! is made, so a task that cannot run leaves nothing behind.

use crate::taskdef::model::{CpuArchitecture, OsFamily, TaskDefinition};
use rootfs_cache::Platform;
use std::path::{Path, PathBuf};

/// Where the kernel lists its binfmt_misc handlers.
/// Ref: linux Documentation/admin-guide/binfmt-misc.rst.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The binfmt_misc directory to read: [`BINFMT_MISC`], or in builds with the tests' hooks
/// (debug assertions or the `test-hooks` feature, as [`crate::task::test_pause`])
/// `MINIFARGATE_BINFMT_MISC` (the tests point it at an empty directory to see the refusal
/// on a host that has handlers).
pub fn binfmt_dir() -> std::path::PathBuf {
    #[cfg(any(debug_assertions, feature = "test-hooks"))]
    if let Some(dir) = &crate::config::hooks().binfmt_misc {
        return dir.clone();
    }
    BINFMT_MISC.into()
}

/// How to get a handler on Debian (the package registers its handlers with the `F` flag
/// through systemd-binfmt, from /usr/lib/binfmt.d/qemu-*.conf).
const FIX: &str = "install and register QEMU's handlers: `apt install qemu-user-static` \
                   (Debian registers them through systemd-binfmt), with binfmt_misc mounted \
                   (`mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`, then \
                   `/usr/lib/systemd/systemd-binfmt`)";

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "runtimePlatform.operatingSystemFamily {family}: this host runs Linux containers only; \
         register the task definition with operatingSystemFamily LINUX (or without it) to run \
         it here"
    )]
    OsFamily { family: OsFamily },
    #[error(
        "runtimePlatform.cpuArchitecture {arch}: this {host} host cannot run {platform} images \
         ({images}): {why}; {FIX}"
    )]
    NoHandler {
        arch: CpuArchitecture,
        host: &'static str,
        /// `os/arch` of the images it would pull.
        platform: String,
        images: String,
        #[source]
        why: Box<HandlerError>,
    },
}

/// Why no binfmt_misc handler runs `arch`'s executables ([`handler`]).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "binfmt_misc is not mounted at {} ({source}), so no handler runs foreign binaries",
        dir.display()
    )]
    NotMounted {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binfmt_misc is disabled ({}/status says {status:?})", dir.display())]
    Disabled { dir: PathBuf, status: String },
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the binfmt_misc handler {name:?} ({interpreter}) is registered without the F flag, so \
         its interpreter is not found inside a container"
    )]
    WithoutF { name: String, interpreter: String },
    /// `machine` is `x86_64` or `aarch64`.
    #[error("no binfmt_misc handler for {machine} executables is registered in {}", dir.display())]
    None { machine: &'static str, dir: PathBuf },
}

/// The ECS name of the host's architecture, if it is one ECS knows.
pub fn host_arch() -> Option<CpuArchitecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(CpuArchitecture::X8664),
        "aarch64" => Some(CpuArchitecture::Arm64),
        _ => None,
    }
}

/// The architecture a task asks for: `runtimePlatform.cpuArchitecture`, else this host's.
/// (ECS's default is X86_64, and a Fargate task without runtimePlatform runs there; on an
/// arm64 host the host's own is the useful default, and it is reported as such.)
/// Ref: ecs.json `RuntimePlatform`; AWS::ECS::TaskDefinition RuntimePlatform docs.
pub fn wanted_arch(def: &TaskDefinition) -> Option<CpuArchitecture> {
    def.runtime_platform
        .as_ref()
        .and_then(|r| r.cpu_architecture)
        .or_else(host_arch)
}

/// The image platform a task pulls from an index.
pub fn wanted_platform(def: &TaskDefinition) -> Platform {
    match wanted_arch(def) {
        Some(CpuArchitecture::Arm64) => Platform {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: None,
        },
        Some(CpuArchitecture::X8664) => Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        },
        None => Platform::host(),
    }
}

/// Refuses a task this host cannot run: a non-Linux operating system family, or a foreign
/// architecture with no binfmt_misc handler under `binfmt_dir` that the kernel can use
/// inside a container (one registered with the `F` flag).
pub fn check(def: &TaskDefinition, binfmt_dir: &Path) -> Result<(), PlatformError> {
    let rp = def.runtime_platform.as_ref();
    if let Some(family) = rp.and_then(|r| r.operating_system_family)
        && family.is_windows()
    {
        return Err(PlatformError::OsFamily { family });
    }
    let Some(arch) = rp.and_then(|r| r.cpu_architecture) else {
        return Ok(());
    };
    if Some(arch) == host_arch() {
        return Ok(());
    }
    let why = match handler(arch, binfmt_dir) {
        Ok(()) => return Ok(()),
        Err(why) => why,
    };
    let images = def
        .container_definitions
        .iter()
        .flatten()
        .map(|c| format!("{}: {}", c.name_str(), c.image.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ");
    Err(PlatformError::NoHandler {
        arch,
        host: std::env::consts::ARCH,
        platform: wanted_platform(def).to_string(),
        images,
        why: Box::new(why),
    })
}

/// The first 20 bytes of an executable ELF file for `arch` (64-bit, little endian,
/// `e_type` ET_EXEC or ET_DYN): what the kernel matches a handler's magic against.
/// Ref: ELF gABI (e_ident, e_type, e_machine); EM_X86_64 = 62, EM_AARCH64 = 183.
fn elf_header(arch: CpuArchitecture, e_type: u8) -> [u8; 20] {
    let machine = match arch {
        CpuArchitecture::X8664 => 0x3e,
        CpuArchitecture::Arm64 => 0xb7,
    };
    let mut h = [0u8; 20];
    h[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h[16] = e_type;
    h[18] = machine;
    h
}

/// One registered handler, as `/proc/sys/fs/binfmt_misc/<name>` shows it.
#[derive(Debug, Default)]
struct Handler {
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    fn parse(text: &str) -> Handler {
        let mut h = Handler::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "enabled" => h.enabled = true,
                "interpreter" => h.interpreter = value.to_string(),
                "flags:" => h.flags = value.to_string(),
                "offset" => h.offset = value.parse().unwrap_or(0),
                "magic" => h.magic = hex::decode(value).unwrap_or_default(),
                "mask" => h.mask = hex::decode(value).unwrap_or_default(),
                _ => {}
            }
        }
        h
    }

    /// Whether the kernel would hand `header` to this handler (magic under mask).
    fn matches(&self, header: &[u8]) -> bool {
        if self.magic.is_empty() {
            return false;
        }
        self.magic.iter().enumerate().all(|(i, m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|b| b & mask == m & mask)
        })
    }
}

/// Ok when an enabled handler for `arch`'s executables is registered with the `F` flag
/// (the kernel opens the interpreter at registration, so it works inside a container's
/// mount namespace, where its path does not exist); else why not.
/// Ref: linux Documentation/admin-guide/binfmt-misc.rst (flags `F`, status file).
fn handler(arch: CpuArchitecture, dir: &Path) -> Result<(), HandlerError> {
    let status =
        std::fs::read_to_string(dir.join("status")).map_err(|source| HandlerError::NotMounted {
            dir: dir.to_path_buf(),
            source,
        })?;
    if status.trim() != "enabled" {
        return Err(HandlerError::Disabled {
            dir: dir.to_path_buf(),
            status: status.trim().to_string(),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|source| HandlerError::List {
        dir: dir.to_path_buf(),
        source,
    })?;
    let exec = elf_header(arch, 2);
    let dyn_ = elf_header(arch, 3);
    let mut without_f = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let h = Handler::parse(&text);
        if !(h.enabled && h.matches(&exec) && h.matches(&dyn_)) {
            continue;
        }
        if h.flags.contains('F') {
            return Ok(());
        }
        without_f = Some(HandlerError::WithoutF {
            name: name.to_string_lossy().into_owned(),
            interpreter: h.interpreter.to_string(),
        });
    }
    Err(without_f.unwrap_or_else(|| HandlerError::None {
        machine: match arch {
            CpuArchitecture::X8664 => "x86_64",
            CpuArchitecture::Arm64 => "aarch64",
        },
        dir: dir.to_path_buf(),
    }))
}

/// Why an image pulled for `wanted` cannot run as asked: its config names another
/// architecture (a single-platform image, or an index entry that lies).
pub fn image_mismatch(image: &str, image_platform: &str, wanted: &Platform) -> Option<String> {
    let got: Platform = image_platform.parse().ok()?;
    if got.matches_loosely(wanted) {
        return None;
    }
    Some(format!(
        "{image} is a {got} image, but the task asks for {wanted} (runtimePlatform.\
         cpuArchitecture, X86_64 when not set): set cpuArchitecture to the image's \
         architecture, or push a {wanted} image (or an index with one) under this name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        for (name, text) in entries {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    fn foreign() -> &'static str {
        if host_arch() == Some(CpuArchitecture::Arm64) {
            "X86_64"
        } else {
            "ARM64"
        }
    }

    #[test]
    fn qemu_handler_matches_aarch64_executables_only() {
        let h = Handler::parse(QEMU_AARCH64);
        assert!(h.enabled && h.flags.contains('F'));
        assert!(h.matches(&elf_header(CpuArchitecture::Arm64, 2)));
        assert!(h.matches(&elf_header(CpuArchitecture::Arm64, 3)));
        assert!(!h.matches(&elf_header(CpuArchitecture::X8664, 2)));
        assert!(!h.matches(&elf_header(CpuArchitecture::Arm64, 1)));
    }

    #[test]
    fn foreign_architecture_needs_an_f_handler() {
        let d = def(&format!(
            r#"{{"runtimePlatform":{{"cpuArchitecture":"{}"}},
                "containerDefinitions":[{{"name":"app","image":"busybox:1"}}]}}"#,
            foreign()
        ));
        if host_arch() == Some(CpuArchitecture::X8664) {
            let ok = binfmt(&[("qemu-aarch64", QEMU_AARCH64)]);
            check(&d, ok.path()).unwrap();
            let no_f = binfmt(&[("qemu-aarch64", &QEMU_AARCH64.replace("POCF", "POC"))]);
            let e = check(&d, no_f.path()).unwrap_err().to_string();
            assert!(e.contains("without the F flag"), "{e}");
            let disabled = binfmt(&[("qemu-aarch64", &QEMU_AARCH64.replace("enabled\n", ""))]);
            let e = check(&d, disabled.path()).unwrap_err().to_string();
            assert!(e.contains("no binfmt_misc handler for aarch64"), "{e}");
        }
        let none = binfmt(&[]);
        let e = check(&d, none.path()).unwrap_err().to_string();
        assert!(
            e.contains("app: busybox:1")
                && e.contains("apt install qemu-user-static")
                && e.contains("binfmt_misc"),
            "{e}"
        );
        let unmounted = tempfile::tempdir().unwrap();
        let e = check(&d, unmounted.path()).unwrap_err().to_string();
        assert!(e.contains("binfmt_misc is not mounted"), "{e}");
    }

    #[test]
    fn native_and_unset_need_nothing_windows_is_refused() {
        let none = tempfile::tempdir().unwrap();
        check(
            &def(r#"{"containerDefinitions":[{"name":"a"}]}"#),
            none.path(),
        )
        .unwrap();
        check(
            &def(r#"{"runtimePlatform":{"operatingSystemFamily":"LINUX"}}"#),
            none.path(),
        )
        .unwrap();
        let e = check(
            &def(r#"{"runtimePlatform":{"operatingSystemFamily":"WINDOWS_SERVER_2022_CORE"}}"#),
            none.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("WINDOWS_SERVER_2022_CORE") && e.contains("Linux containers only"));
        let arm = def(r#"{"runtimePlatform":{"cpuArchitecture":"ARM64"}}"#);
        assert_eq!(wanted_platform(&arm).to_string(), "linux/arm64");
        let x86 = def(r#"{"runtimePlatform":{"cpuArchitecture":"X86_64"}}"#);
        assert_eq!(wanted_platform(&x86).to_string(), "linux/amd64");
    }

    #[test]
    fn an_image_of_another_architecture_is_named() {
        let arm: Platform = "linux/arm64".parse().unwrap();
        assert!(image_mismatch("busybox:1", "linux/arm64/v8", &arm).is_none());
        let e = image_mismatch("busybox:1", "linux/amd64", &arm).unwrap();
        assert!(e.contains("busybox:1 is a linux/amd64 image") && e.contains("linux/arm64"));
    }

    /// Why no handler runs a foreign architecture, word for word.
    #[test]
    fn handler_errors_read_as_before() {
        let arm = CpuArchitecture::Arm64;
        let missing = tempfile::tempdir().unwrap().path().join("gone");
        assert_eq!(
            handler(arm, &missing).unwrap_err().to_string(),
            format!(
                "binfmt_misc is not mounted at {} (No such file or directory (os error 2)), so \
                 no handler runs foreign binaries",
                missing.display()
            )
        );
        let off = binfmt(&[]);
        std::fs::write(off.path().join("status"), "disabled\n").unwrap();
        assert_eq!(
            handler(arm, off.path()).unwrap_err().to_string(),
            format!(
                "binfmt_misc is disabled ({}/status says \"disabled\")",
                off.path().display()
            )
        );
        let none = binfmt(&[]);
        assert_eq!(
            handler(arm, none.path()).unwrap_err().to_string(),
            format!(
                "no binfmt_misc handler for aarch64 executables is registered in {}",
                none.path().display()
            )
        );
        let no_f = binfmt(&[("qemu-aarch64", &QEMU_AARCH64.replace("POCF", "POC"))]);
        assert_eq!(
            handler(arm, no_f.path()).unwrap_err().to_string(),
            "the binfmt_misc handler \"qemu-aarch64\" (/usr/libexec/qemu-binfmt/aarch64-binfmt-P) \
             is registered without the F flag, so its interpreter is not found inside a container"
        );
    }
}
