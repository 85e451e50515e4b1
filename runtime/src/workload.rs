//! The workload executor libcontainer runs in the container's process: the last steps
//! before the payload, and its exec.

use std::path::{Path, PathBuf};

use crate::filter::InitFilter;

/// The workload executor: what libcontainer runs in the container process, after
/// namespaces, mounts, user and capabilities are set up, to exec the payload.
///
/// Two reasons for our own instead of libcontainer's default:
/// - Fork safety. libcontainer forks this (multi-threaded) process; the default
///   executor then rewrites the environment with `std::env::set_var`, which takes
///   std's environment write lock. If another thread held that lock when we forked
///   (any `Command::spawn` takes it to read), the child waits forever. This executor
///   never touches the process environment: it `execve`s with the spec's env.
/// - Seccomp for exec. libcontainer 0.7 builds an exec's spec without the container's
///   `linux.seccomp`, so an exec would run unfiltered; this loads the container's filter
///   right before the exec. Loading a filter after capabilities are dropped needs
///   no_new_privs, so exec'd processes of a filtered container always get it.
/// - The init's filter compiled once ([`crate::filter`]): loaded here, in `setup_envs`,
///   the last step before the init reports ready.
#[derive(Clone)]
pub(crate) struct Workload {
    /// The container's filter, for exec'd processes (None for the init process).
    pub(crate) exec_seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The init process's filter, compiled ahead (None: none, or libcontainer loads it
    /// from the spec).
    pub(crate) init_filter: Option<InitFilter>,
    /// An exec'd process: a command that cannot run exits 127/126 with a message on
    /// stderr, like a shell or `docker exec`, instead of failing the exec call.
    pub(crate) exec: bool,
    /// `PR_SET_PDEATHSIG` SIGKILL ([`crate::ExecSpec::kill_with_caller`]).
    pub(crate) kill_with_caller: bool,
    /// (rows, columns) of the pty on stdin ([`crate::ExecSpec::tty_size`]).
    pub(crate) tty_size: Option<(u16, u16)>,
}

impl Workload {
    fn fail(msg: String) -> libcontainer::workload::ExecutorError {
        libcontainer::workload::ExecutorError::Execution(msg.into())
    }

    /// For an exec'd process: print `msg` on its stderr and exit with `code` (127: not
    /// found, 126: found but not executable). Otherwise the error goes to libcontainer.
    fn cannot_run(&self, code: i32, msg: String) -> libcontainer::workload::ExecutorError {
        if self.exec {
            let line = format!("minifargate exec: {msg}\n");
            let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
            crate::sys::exit_now(code);
        }
        Self::fail(msg)
    }
}

impl libcontainer::workload::Executor for Workload {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        use std::ffi::CString;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Self::fail("the spec has no process".into()))?;
        let filtered = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .is_some();
        if let Some((rows, cols)) = self.tty_size {
            let size = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // stdin is the pty's slave here (libcontainer set up the console).
            let _ = rustix::termios::tcsetwinsize(std::io::stdin(), size);
        }
        if self.kill_with_caller {
            // Ref: prctl(2) PR_SET_PDEATHSIG: sent when the thread that forked us ends.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| Self::fail(format!("set the parent-death signal: {e}")))?;
        }
        if let (false, Some(seccomp)) = (filtered, &self.exec_seccomp) {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| Self::fail(format!("set no_new_privs: {e}")))?;
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| Self::fail(format!("load seccomp: {e}")))?;
        }
        let args = process.args().clone().unwrap_or_default();
        let env = process.env().clone().unwrap_or_default();
        let first = args
            .first()
            .ok_or_else(|| Self::fail("the command is empty".into()))?;
        let path = if first.contains('/') {
            PathBuf::from(first)
        } else {
            let path_var = env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or(crate::oci::DEFAULT_PATH);
            let found = path_var
                .split(':')
                .map(|dir| Path::new(dir).join(first))
                .find(|p| p.is_file());
            match found {
                Some(p) => p,
                None => {
                    return Err(self.cannot_run(
                        127,
                        format!("executable {first:?} not found in PATH {path_var:?}"),
                    ));
                }
            }
        };
        let cstr = |s: &str| CString::new(s).map_err(|_| Self::fail(format!("NUL byte in {s:?}")));
        let c_path = cstr(&path.to_string_lossy())?;
        let c_args = args
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let c_env = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
        let err = nix::unistd::execve(&c_path, &c_args, &c_env).unwrap_err();
        let code = if err == nix::Error::ENOENT { 127 } else { 126 };
        Err(self.cannot_run(code, format!("exec {}: {err}", path.display())))
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        // An exec'd command that cannot run exits 127/126 from `exec` (as a shell
        // would); the default validation would fail the exec call instead.
        if self.exec {
            return Ok(());
        }
        libcontainer::workload::default::get_executor().validate(spec)
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        // The environment: deliberately nothing, see the type's doc (exec passes the
        // spec's env). libcontainer calls this after its capability drop and before the
        // init reports ready, which is where the compiled filter goes (crate::filter).
        if let Some(f) = &self.init_filter {
            f.apply()
                .map_err(libcontainer::workload::ExecutorSetEnvsError::Other)?;
        }
        Ok(())
    }
}
