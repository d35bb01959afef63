//! What the engine does differently per operating system, in one place: the host name,
//! owner-only files and who else may read a key file (mode bits on Unix, the access list
//! on Windows), directory syncs, whether a process lives, the process group the far end's
//! ssh runs in, thread priorities, a listener's accept queue, the local socket pair
//! `--spipe` bridges through, whether UNIX-domain sockets exist, and the system's faster
//! cryptography (OpenSSL's constant-time modular exponentiation and SHA-256, on Linux).
//! The one other Unix-only part is the UNIX-domain socket variant of
//! `net::stream::NetStream` and `net::listener::Listener`, under `cfg(unix)` there.
//!
//! Built and tested: Linux. Windows: built, its unit tests run under wine. macOS: the Unix
//! code, type-checked and linted, not run.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::{Child, Command};

/// Whether this system has UNIX-domain sockets the engine can use. Windows has none that
/// tokio serves, so `/path` addresses are refused there when they are parsed.
pub const UNIX_SOCKETS: bool = cfg!(unix);

/// This machine's name as the system knows it (`gethostname`; Windows: `COMPUTERNAME`),
/// or `localhost` when it has none: what the app shows, what a far end connects back to,
/// and a name the metrics endpoint answers to.
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
        // or truncates, and the last byte stays 0 either way.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
        match std::str::from_utf8(&buf[..end]) {
            Ok(name) if ok && !name.is_empty() => name.to_owned(),
            _ => "localhost".to_owned(),
        }
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

/// Creates the file at `path` with `options` (which say how: `create_new`, and write),
/// readable and writable by its owner only: mode 0600 on Unix, set as it is created; on
/// Windows a protected access list naming only the current user, set on the new, still
/// empty file before anything is written (a file would otherwise inherit its directory's
/// list, which elsewhere than the profile lets every user read). A file whose list cannot
/// be set is removed and the error returned.
pub fn create_owner_only(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).open(path)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        use windows_sys::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE};
        use windows_sys::Win32::Storage::FileSystem::WRITE_DAC;
        // WRITE_DAC: the owner may change the list, but only if the handle asks for it.
        let file = options
            .access_mode(GENERIC_READ | GENERIC_WRITE | WRITE_DAC)
            .open(path)?;
        if let Err(e) = windows::restrict_to_owner(&file) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }
    #[cfg(not(any(unix, windows)))]
    {
        options.open(path)
    }
}

/// Who besides the owner may read a file, as the system says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenToOthers {
    /// Unix: the permission bits, when group or others have any.
    #[cfg(unix)]
    Mode(u32),
    /// Windows: the accounts of the access list's entries that let broad groups read it
    /// (Everyone, Users, Authenticated Users, ...), by name.
    #[cfg(windows)]
    Accounts(Vec<String>),
}

/// Whether a key file may be read by others than its owner (`meta` is the file's, `path`
/// its name): group or other mode bits on Unix; on Windows an entry of its access list
/// that lets a broad group (Everyone, Users, Authenticated Users, Guests, anonymous,
/// interactive or network logons) read it, or no list at all (which lets everyone in).
/// `None` when only the owner (and the system's own accounts) may, or when the system
/// cannot say.
pub fn open_to_others(path: &Path, meta: &std::fs::Metadata) -> Option<OpenToOthers> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = path;
        let mode = meta.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(OpenToOthers::Mode(mode))
    }
    #[cfg(windows)]
    {
        let _ = meta;
        let readers = windows::broad_readers(path)?;
        (!readers.is_empty()).then_some(OpenToOthers::Accounts(readers))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (path, meta);
        None
    }
}

/// Flushes a directory's entries to disk, so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a file to flush it; NTFS journals the rename.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether process `pid` exists (it may belong to another user). Where this cannot be
/// told, the answer is yes, so nothing of a live process is ever removed.
pub fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(windows)]
    {
        windows::process_exists(pid)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        true
    }
}

/// Whether an accept() error means the process or system ran out of something
/// (descriptors, buffers, memory) rather than that one client gave up.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::ERROR_NOT_ENOUGH_MEMORY;
        use windows_sys::Win32::Networking::WinSock::{WSAEMFILE, WSAENOBUFS};
        matches!(e.raw_os_error(), Some(WSAEMFILE | WSAENOBUFS))
            || e.raw_os_error() == i32::try_from(ERROR_NOT_ENOUGH_MEMORY).ok()
    }
    #[cfg(not(any(unix, windows)))]
    {
        e.kind() == io::ErrorKind::OutOfMemory
    }
}

/// Whether a listening socket takes SO_REUSEADDR. On Unix it lets a restarted daemon bind
/// while the old connections linger in TIME_WAIT. On Windows it would let another program
/// bind the same port alongside (and take connections meant for the tunnel), and
/// TIME_WAIT does not block a listener there anyway.
pub const REUSE_LISTEN_ADDRESS: bool = cfg!(unix);

/// What to check when the system refuses to let a program listen on an address.
#[cfg(unix)]
pub const LISTEN_DENIED_HINT: &str =
    "ports below 1024 need administrator rights, and socket paths need a writable directory";
#[cfg(not(unix))]
pub const LISTEN_DENIED_HINT: &str = "another program holds the port for itself, or the system reserves it (netsh interface ipv4 show excludedportrange protocol=tcp lists the reserved ranges)";

/// How many connections wait in a listening TCP socket's accept queue (the kernel's
/// completed handshakes not yet accepted). Linux reports it in `TCP_INFO` of the listening
/// socket; elsewhere the number is unknown.
pub fn accept_queue_len(listener: &tokio::net::TcpListener) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the descriptor is open for the borrow; the pointers are to locals.
        let result = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        // For a listening socket, tcpi_unacked is the accept queue's current length.
        (result == 0).then_some(u64::from(info.tcpi_unacked))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        None
    }
}

/// A connected pair of local stream sockets: `sluiced --spipe` bridges standard input and
/// output through one, as spipe does. UNIX-domain where there are such sockets, else two
/// TCP sockets on the loopback address.
#[cfg(unix)]
pub type LocalStream = tokio::net::UnixStream;
#[cfg(not(unix))]
pub type LocalStream = tokio::net::TcpStream;

/// Makes a [`LocalStream`] pair.
pub async fn local_stream_pair() -> io::Result<(LocalStream, LocalStream)> {
    #[cfg(unix)]
    {
        tokio::net::UnixStream::pair()
    }
    #[cfg(not(unix))]
    {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let connecting = tokio::net::TcpStream::connect(listener.local_addr()?);
        let (connected, accepted) = tokio::join!(connecting, listener.accept());
        let (connected, (accepted, from)) = (connected?, accepted?);
        // Any local process could connect to the port in the instant it is open: the
        // accepted end must be ours.
        if Some(from) != connected.local_addr().ok() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "another local program connected to --spipe's loopback bridge first; try again",
            ));
        }
        Ok((connected, accepted))
    }
}

/// base^exponent mod modulus (big-endian numbers) into `out`, in constant time, from the
/// system's bignum library where it has a faster one than crypto-bigint: on Linux OpenSSL's
/// libcrypto (`BN_mod_exp_mont_consttime`, chosen by the exponent's `BN_FLG_CONSTTIME`;
/// MULX/ADX assembly, 0.27-0.30 ms against crypto-bigint's 0.46-0.50 ms for the shared
/// secret here). The exponent's length in bits must be public: it shapes the time taken.
/// False where there is none or it failed (it allocates): the caller computes it itself.
pub fn system_constant_time_mod_exp(
    base: &[u8],
    exponent: &[u8],
    modulus: &[u8],
    out: &mut [u8],
) -> bool {
    #[cfg(target_os = "linux")]
    {
        openssl_mod_exp(base, exponent, modulus, out).is_some()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (base, exponent, modulus, out);
        false
    }
}

/// Which library [`system_constant_time_mod_exp`] and [`KeyedHmacSha256`] call, with its
/// version (for benchmark reports), or None where there is none.
pub fn system_crypto_library() -> Option<&'static str> {
    #[cfg(target_os = "linux")]
    {
        Some(openssl::version::version())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
fn openssl_mod_exp(base: &[u8], exponent: &[u8], modulus: &[u8], out: &mut [u8]) -> Option<()> {
    use openssl::bn::{BigNum, BigNumContext};
    use zeroize::Zeroizing;

    /// A number wiped (`BN_clear`) before it is freed: the crate's drop only frees.
    struct Wiped(BigNum);
    impl Drop for Wiped {
        fn drop(&mut self) {
            self.0.clear();
        }
    }

    let modulus = BigNum::from_slice(modulus).ok()?;
    let base = BigNum::from_slice(base).ok()?;
    let mut exponent = Wiped(BigNum::from_slice(exponent).ok()?);
    exponent.0.set_const_time();
    let mut power = Wiped(BigNum::new().ok()?);
    // The context's scratch numbers are cleared when it is freed (BN_CTX_free), and the
    // constant-time routine cleanses its table of powers itself.
    let mut context = BigNumContext::new().ok()?;
    power
        .0
        .mod_exp(&base, &exponent.0, &modulus, &mut context)
        .ok()?;
    // Exactly out.len() bytes, or an error when the power does not fit.
    let bytes = Zeroizing::new(power.0.to_vec_padded(i32::try_from(out.len()).ok()?).ok()?);
    out.copy_from_slice(&bytes);
    Some(())
}

/// HMAC-SHA256 under one 32-byte key, keyed once and then computed many times (the packet
/// code's MAC): from OpenSSL's SHA-256 on Linux, whose assembly is level with sha2's
/// SHA-NI code and 1.29x its portable code on a CPU without SHA extensions (342 against
/// 440 MB/s, docs/PERFORMANCE.md); from the hmac and sha2 crates elsewhere.
#[derive(Clone)]
pub struct KeyedHmacSha256 {
    #[cfg(target_os = "linux")]
    inner: openssl_sha::KeyedState,
    #[cfg(target_os = "linux")]
    outer: openssl_sha::KeyedState,
    #[cfg(not(target_os = "linux"))]
    keyed: hmac::Hmac<sha2::Sha256>,
}

impl KeyedHmacSha256 {
    pub fn new(key: &[u8; 32]) -> Self {
        // HMAC zero-pads a 32-byte key to the 64-byte block.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        #[cfg(target_os = "linux")]
        {
            let mut pad = zeroize::Zeroizing::new([0u8; 64]);
            let mut keyed = |byte: u8| {
                for (p, k) in pad.iter_mut().zip(block.iter()) {
                    *p = k ^ byte;
                }
                let mut state = openssl_sha::KeyedState::new();
                state.0.update(&pad[..]);
                state
            };
            let (inner, outer) = (keyed(0x36), keyed(0x5c));
            KeyedHmacSha256 { inner, outer }
        }
        #[cfg(not(target_os = "linux"))]
        {
            use hmac::KeyInit;
            KeyedHmacSha256 {
                keyed: hmac::Hmac::new((&*block).into()),
            }
        }
    }

    /// HMAC(key, the parts one after another).
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        #[cfg(target_os = "linux")]
        {
            let mut inner = self.inner.clone();
            for part in parts {
                inner.0.update(part);
            }
            let mut outer = self.outer.clone();
            outer.0.update(&inner.finish());
            outer.finish()
        }
        #[cfg(not(target_os = "linux"))]
        {
            use hmac::Mac;
            let mut mac = self.keyed.clone();
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        }
    }
}

/// OpenSSL's SHA-256 state, wiped when dropped (the crate's type is plain data without a
/// drop): a keyed HMAC state is as good as the key.
#[cfg(target_os = "linux")]
mod openssl_sha {
    use openssl::sha::Sha256;

    #[derive(Clone)]
    pub struct KeyedState(pub Sha256);

    impl KeyedState {
        pub fn new() -> Self {
            KeyedState(Sha256::new())
        }

        /// The digest; the state left behind is wiped with the rest on drop.
        pub fn finish(&mut self) -> [u8; 32] {
            std::mem::take(&mut self.0).finish()
        }
    }

    impl Drop for KeyedState {
        fn drop(&mut self) {
            // SAFETY: overwrites a valid, initialised value with another valid value of
            // the same type (which has no drop of its own); volatile, so the store stays.
            unsafe { std::ptr::write_volatile(&mut self.0, Sha256::new()) };
        }
    }
}

/// A lower scheduling priority for the calling thread (nice 10 on Linux, "below normal"
/// on Windows): background work such as refilling the Diffie-Hellman pool gives way to
/// the connections it serves, yet still progresses on a busy machine (SCHED_IDLE or nice
/// 19 starved it there). Errors leave the priority as it was; on other Unix systems
/// priorities work per process and the thread keeps normal priority.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; gettid cannot fail.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
    #[cfg(windows)]
    // SAFETY: the pseudo-handle of the calling thread needs no closing.
    unsafe {
        use windows_sys::Win32::System::Threading::{
            GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_BELOW_NORMAL,
        };
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL);
    }
}

/// A child process and whatever it starts, stopped together: on Unix its own process
/// group (`process_group(0)`), on Windows a job object it is put in as soon as it runs
/// (what it starts in that first instant escapes the job; the far end's ssh starts a
/// ProxyCommand only once it is connecting).
pub struct ProcessGroup {
    pid: u32,
    #[cfg(windows)]
    job: Option<windows::Job>,
}

impl ProcessGroup {
    /// Makes `command` start its process in a group of its own, detached from this
    /// process's terminal signals (Ctrl+C reaches it only through us).
    pub fn prepare(command: &mut Command) -> &mut Command {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0)
        }
        #[cfg(windows)]
        {
            use std::os::windows::process::CommandExt;
            use windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;
            command.creation_flags(CREATE_NEW_PROCESS_GROUP)
        }
        #[cfg(not(any(unix, windows)))]
        {
            command
        }
    }

    /// The group of a child started from a [`ProcessGroup::prepare`]d command.
    pub fn of(child: &Child) -> ProcessGroup {
        ProcessGroup {
            pid: child.id(),
            #[cfg(windows)]
            job: windows::Job::holding(child),
        }
    }

    /// Kills every process of the group at once. A group whose processes all ended is
    /// left alone.
    pub fn kill(&self) {
        #[cfg(unix)]
        {
            let Ok(group) = libc::pid_t::try_from(self.pid) else {
                return;
            };
            // SAFETY: kill(2) on the process group the child leads (`process_group(0)`
            // made its pid the group id). While any member lives, the kernel keeps that
            // id from being reused; once all are gone the call finds no group (ESRCH) and
            // does nothing.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        #[cfg(windows)]
        match &self.job {
            Some(job) => job.terminate(),
            // Without a job, at least the child itself.
            None => windows::terminate_process(self.pid),
        }
        #[cfg(not(any(unix, windows)))]
        let _ = self.pid;
    }
}

/// Tests only: adds an entry to the file's access list letting Everyone read it, as a
/// careless `icacls FILE /grant Everyone:R` would.
#[cfg(all(test, windows))]
pub fn grant_everyone_read(path: &Path) -> io::Result<()> {
    windows::grant_everyone_read(path)
}

/// Windows: who a process runs as, and security attributes for the named objects local
/// processes talk through (sluiced's reload event, the app's single-instance pipe).
#[cfg(windows)]
pub use windows::{SecurityAttributes, current_user_sid, current_user_sid_string, user_sid_of};

/// The Windows calls behind the functions above.
#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::os::windows::io::{
        AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle,
    };
    use std::path::Path;
    use std::process::Child;

    use windows_sys::Win32::Foundation::{
        ERROR_ACCESS_DENIED, ERROR_SUCCESS, GENERIC_ALL, GENERIC_READ, HANDLE, LocalFree,
        STILL_ACTIVE,
    };
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
        GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
    };
    use windows_sys::Win32::Security::{
        ACCESS_ALLOWED_ACE, ACL, ACL_REVISION, AddAccessAllowedAce, CreateWellKnownSid,
        DACL_SECURITY_INFORMATION, EqualSid, GetAce, GetLengthSid, GetTokenInformation,
        INHERIT_ONLY_ACE, InitializeAcl, InitializeSecurityDescriptor, PSECURITY_DESCRIPTOR,
        SE_DACL_PROTECTED, SECURITY_ATTRIBUTES, SECURITY_MAX_SID_SIZE, SetKernelObjectSecurity,
        SetSecurityDescriptorControl, SetSecurityDescriptorDacl, TOKEN_QUERY, TOKEN_USER,
        TokenUser, WELL_KNOWN_SID_TYPE, WinAnonymousSid, WinAuthenticatedUserSid,
        WinBuiltinGuestsSid, WinBuiltinUsersSid, WinInteractiveSid, WinNetworkSid, WinWorldSid,
    };
    use windows_sys::Win32::Storage::FileSystem::{FILE_ALL_ACCESS, FILE_READ_DATA};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, TerminateJobObject,
    };
    use windows_sys::Win32::System::SystemServices::{
        ACCESS_ALLOWED_ACE_TYPE, SECURITY_DESCRIPTOR_REVISION,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetExitCodeProcess, OpenProcess, OpenProcessToken,
        PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE, TerminateProcess,
    };

    /// A handle from a call that returns null on failure, owned (closed when dropped).
    fn owned(handle: HANDLE) -> Option<OwnedHandle> {
        // SAFETY: a non-null handle the call just returned is ours to close, once.
        (!handle.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
    }

    /// The user SID of a process (its token's user), as bytes a PSID can point into.
    /// Fails for a process this one may not query (another user's, mostly).
    pub fn user_sid_of(process: BorrowedHandle<'_>) -> io::Result<Vec<u8>> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: an open process handle; `token` receives a handle we own.
        if unsafe { OpenProcessToken(process.as_raw_handle(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let token = owned(token).ok_or_else(io::Error::last_os_error)?;
        let mut needed = 0u32;
        // SAFETY: asking for the size only (no buffer).
        unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                std::ptr::null_mut(),
                0,
                &mut needed,
            )
        };
        // u64 units keep the buffer aligned for TOKEN_USER's pointer.
        let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
        // SAFETY: the buffer holds `needed` bytes, as the first call asked for.
        if unsafe {
            GetTokenInformation(
                token.as_raw_handle(),
                TokenUser,
                buffer.as_mut_ptr().cast(),
                needed,
                &mut needed,
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call filled a TOKEN_USER at the buffer's start; its SID points
        // into the same buffer, which lives until the SID is copied out below.
        let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
        // SAFETY: a valid SID, as the call returned it.
        let len = unsafe { GetLengthSid(sid) } as usize;
        // SAFETY: the SID is `len` bytes long and lives in `buffer`.
        Ok(unsafe { std::slice::from_raw_parts(sid.cast::<u8>(), len) }.to_vec())
    }

    /// The current user's SID, as bytes a PSID can point into.
    pub fn current_user_sid() -> io::Result<Vec<u8>> {
        // SAFETY: the pseudo-handle of this process, valid for as long as the process is.
        user_sid_of(unsafe { BorrowedHandle::borrow_raw(GetCurrentProcess() as RawHandle) })
    }

    /// The current user's SID as text (S-1-5-21-...), for SDDL strings.
    pub fn current_user_sid_string() -> io::Result<String> {
        let mut sid = current_user_sid()?;
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: a valid SID; the string is allocated for us and freed below.
        if unsafe { ConvertSidToStringSidW(sid.as_mut_ptr().cast(), &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a NUL-terminated string from the call.
        let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
        // SAFETY: `len` characters before the NUL.
        let string = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
        // SAFETY: allocated by ConvertSidToStringSidW for us to free.
        unsafe { LocalFree(text.cast()) };
        Ok(string)
    }

    /// Security attributes built from an SDDL string, for the named objects that local
    /// processes talk through (a pipe, an event); the descriptor is freed when dropped.
    pub struct SecurityAttributes {
        attributes: SECURITY_ATTRIBUTES,
    }

    impl SecurityAttributes {
        pub fn from_sddl(sddl: &str) -> io::Result<SecurityAttributes> {
            let sddl: Vec<u16> = sddl.encode_utf16().chain([0]).collect();
            let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            // SAFETY: a NUL-terminated SDDL string; the descriptor is freed on drop.
            if unsafe {
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut descriptor,
                    std::ptr::null_mut(),
                )
            } == 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(SecurityAttributes {
                attributes: SECURITY_ATTRIBUTES {
                    nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                    lpSecurityDescriptor: descriptor,
                    bInheritHandle: 0,
                },
            })
        }

        /// For the creating call; valid while `self` lives.
        pub fn as_ptr(&self) -> *const SECURITY_ATTRIBUTES {
            &self.attributes
        }
    }

    impl Drop for SecurityAttributes {
        fn drop(&mut self) {
            // SAFETY: allocated by the conversion in from_sddl for us to free, once.
            unsafe { LocalFree(self.attributes.lpSecurityDescriptor) };
        }
    }

    /// Replaces the file's access list with one entry: full control for the current
    /// user; protected, so nothing is inherited from the directory.
    pub fn restrict_to_owner(file: &File) -> io::Result<()> {
        let mut user = current_user_sid()?;
        set_access_list(&mut [(&mut user, FILE_ALL_ACCESS)], |descriptor| {
            // SAFETY: an open handle (opened with WRITE_DAC) and a valid descriptor.
            unsafe {
                SetKernelObjectSecurity(file.as_raw_handle(), DACL_SECURITY_INFORMATION, descriptor)
            }
        })
    }

    /// Builds a protected access list allowing each SID its rights, wraps it in an
    /// absolute security descriptor and hands that to `apply` (which returns a BOOL).
    /// SetKernelObjectSecurity and SetFileSecurityW take such a descriptor the same way
    /// on Windows and under wine (whose SetSecurityInfo loses the list on files).
    fn set_access_list(
        entries: &mut [(&mut Vec<u8>, u32)],
        apply: impl FnOnce(PSECURITY_DESCRIPTOR) -> i32,
    ) -> io::Result<()> {
        // An ACL header, then per entry an ACCESS_ALLOWED_ACE (whose last u32 is the
        // SID's start) and the SID; in u32 units for alignment.
        let len = std::mem::size_of::<ACL>()
            + entries
                .iter()
                .map(|(sid, _)| std::mem::size_of::<ACCESS_ALLOWED_ACE>() - 4 + sid.len())
                .sum::<usize>();
        let mut acl = vec![0u32; len.div_ceil(4)];
        let acl_len = u32::try_from(acl.len() * 4).map_err(io::Error::other)?;
        let acl_ptr = acl.as_mut_ptr().cast::<ACL>();
        // Room for an absolute SECURITY_DESCRIPTOR (40 bytes on 64-bit systems).
        let mut descriptor = [0u64; 8];
        let descriptor_ptr: PSECURITY_DESCRIPTOR = descriptor.as_mut_ptr().cast();
        // SAFETY: the buffers hold what the calls write (the list is sized above); the
        // descriptor points at the list, which outlives `apply`.
        unsafe {
            if InitializeAcl(acl_ptr, acl_len, ACL_REVISION) == 0 {
                return Err(io::Error::last_os_error());
            }
            for (sid, rights) in entries.iter_mut() {
                if AddAccessAllowedAce(acl_ptr, ACL_REVISION, *rights, sid.as_mut_ptr().cast()) == 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if InitializeSecurityDescriptor(descriptor_ptr, SECURITY_DESCRIPTOR_REVISION) == 0
                || SetSecurityDescriptorDacl(descriptor_ptr, 1, acl_ptr, 0) == 0
                || SetSecurityDescriptorControl(
                    descriptor_ptr,
                    SE_DACL_PROTECTED,
                    SE_DACL_PROTECTED,
                ) == 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        if apply(descriptor_ptr) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Tests only: the file's access list becomes the current user's full control plus
    /// Everyone's read.
    #[cfg(test)]
    pub fn grant_everyone_read(path: &Path) -> io::Result<()> {
        use windows_sys::Win32::Security::SetFileSecurityW;
        use windows_sys::Win32::Storage::FileSystem::FILE_GENERIC_READ;
        let mut user = current_user_sid()?;
        let mut everyone = vec![0u8; SECURITY_MAX_SID_SIZE as usize];
        let mut len = SECURITY_MAX_SID_SIZE;
        // SAFETY: the buffer holds the largest SID there is.
        if unsafe {
            CreateWellKnownSid(
                WinWorldSid,
                std::ptr::null_mut(),
                everyone.as_mut_ptr().cast(),
                &mut len,
            )
        } == 0
        {
            return Err(io::Error::last_os_error());
        }
        everyone.truncate(len as usize);
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
        set_access_list(
            &mut [
                (&mut user, FILE_ALL_ACCESS),
                (&mut everyone, FILE_GENERIC_READ),
            ],
            // SAFETY: a NUL-terminated path and a valid descriptor.
            |descriptor| unsafe {
                SetFileSecurityW(wide.as_ptr(), DACL_SECURITY_INFORMATION, descriptor)
            },
        )
    }

    /// The broad groups whose reading a key file is a warning, with the names shown.
    const BROAD: [(WELL_KNOWN_SID_TYPE, &str); 7] = [
        (WinWorldSid, "Everyone"),
        (WinAuthenticatedUserSid, "Authenticated Users"),
        (WinBuiltinUsersSid, "Users"),
        (WinBuiltinGuestsSid, "Guests"),
        (WinAnonymousSid, "ANONYMOUS LOGON"),
        (WinInteractiveSid, "INTERACTIVE"),
        (WinNetworkSid, "NETWORK"),
    ];

    /// The broad groups the file's access list lets read it ("Everyone" for a file with
    /// no list at all); `None` if the list cannot be read.
    pub fn broad_readers(path: &Path) -> Option<Vec<String>> {
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
        let mut dacl: *mut ACL = std::ptr::null_mut();
        let mut descriptor = std::ptr::null_mut();
        // SAFETY: a NUL-terminated path; the descriptor the call allocates is freed below
        // with LocalFree, after the last use of `dacl`, which points into it.
        let status = unsafe {
            GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut dacl,
                std::ptr::null_mut(),
                &mut descriptor,
            )
        };
        if status != ERROR_SUCCESS {
            return None;
        }
        let readers = if dacl.is_null() {
            // No list: everyone may do anything.
            vec!["Everyone".to_owned()]
        } else {
            // SAFETY: `dacl` points into the descriptor, alive until LocalFree below.
            unsafe { readers_in(dacl) }
        };
        // SAFETY: allocated by GetNamedSecurityInfoW for us to free, once.
        unsafe { LocalFree(descriptor) };
        Some(readers)
    }

    /// The names of the broad groups that an allowing entry of `dacl` lets read.
    ///
    /// # Safety
    /// `dacl` points to a valid access list.
    unsafe fn readers_in(dacl: *const ACL) -> Vec<String> {
        let broad: Vec<([u8; SECURITY_MAX_SID_SIZE as usize], &str)> = BROAD
            .iter()
            .filter_map(|&(kind, name)| {
                let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
                let mut len = SECURITY_MAX_SID_SIZE;
                // SAFETY: the buffer holds the largest SID there is.
                let made = unsafe {
                    CreateWellKnownSid(
                        kind,
                        std::ptr::null_mut(),
                        sid.as_mut_ptr().cast(),
                        &mut len,
                    )
                };
                (made != 0).then_some((sid, name))
            })
            .collect();
        let mut names = Vec::new();
        // SAFETY: as the caller promises.
        let count = unsafe { (*dacl).AceCount };
        for index in 0..u32::from(count) {
            let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
            // SAFETY: the index is within the list's count.
            if unsafe { GetAce(dacl, index, &mut ace) } == 0 || ace.is_null() {
                continue;
            }
            // SAFETY: every entry starts with a header; an allowing entry is an
            // ACCESS_ALLOWED_ACE, its SID starting at SidStart.
            let entry = unsafe { &*ace.cast::<ACCESS_ALLOWED_ACE>() };
            let applies = u32::from(entry.Header.AceType) == ACCESS_ALLOWED_ACE_TYPE
                && u32::from(entry.Header.AceFlags) & INHERIT_ONLY_ACE == 0;
            let reads = entry.Mask & (FILE_READ_DATA | GENERIC_READ | GENERIC_ALL) != 0;
            if !(applies && reads) {
                continue;
            }
            let sid = (&raw const entry.SidStart).cast_mut().cast();
            for (known, name) in &broad {
                // SAFETY: both are valid SIDs.
                if unsafe { EqualSid(sid, known.as_ptr().cast_mut().cast()) } != 0
                    && !names.iter().any(|n| n == name)
                {
                    names.push((*name).to_owned());
                }
            }
        }
        names
    }

    /// Whether process `pid` runs: it can be opened and has no exit code yet. A process
    /// we may not open exists (it belongs to someone else).
    pub fn process_exists(pid: u32) -> bool {
        // SAFETY: OpenProcess returns a handle we own, or null.
        let Some(process) =
            owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })
        else {
            return io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32);
        };
        let mut code = 0u32;
        // SAFETY: an open process handle and a local to write to.
        let known = unsafe { GetExitCodeProcess(process.as_raw_handle(), &mut code) } != 0;
        !known || code == STILL_ACTIVE as u32
    }

    /// Ends process `pid` (best effort).
    pub fn terminate_process(pid: u32) {
        // SAFETY: OpenProcess returns a handle we own, or null.
        if let Some(process) = owned(unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid) }) {
            // SAFETY: an open process handle with the right to terminate it.
            unsafe { TerminateProcess(process.as_raw_handle(), 1) };
        }
    }

    /// A job object holding a child and what it starts.
    pub struct Job(OwnedHandle);

    impl Job {
        /// A new job with `child` in it; `None` if either step fails.
        pub fn holding(child: &Child) -> Option<Job> {
            // SAFETY: an anonymous job with default security; the handle is ours.
            let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
            // SAFETY: both handles are open for the call.
            let assigned =
                unsafe { AssignProcessToJobObject(job.as_raw_handle(), child.as_raw_handle()) };
            (assigned != 0).then_some(Job(job))
        }

        pub fn terminate(&self) {
            // SAFETY: an open job handle.
            unsafe { TerminateJobObject(self.0.as_raw_handle(), 1) };
        }
    }

    #[cfg(test)]
    mod security_tests {
        use super::*;

        #[test]
        fn this_users_sid_reads_as_text_and_makes_an_access_list_bad_sddl_does_not() {
            let sid = current_user_sid_string().unwrap();
            assert!(sid.starts_with("S-1-"), "{sid}");
            let attributes = SecurityAttributes::from_sddl(&format!("D:P(A;;GA;;;{sid})")).unwrap();
            // SAFETY: points at `attributes`, alive here.
            let descriptor = unsafe { (*attributes.as_ptr()).lpSecurityDescriptor };
            assert!(!descriptor.is_null());
            assert!(SecurityAttributes::from_sddl("D:P(A;;GA;;;not a SID)").is_err());
        }
    }
}

/// How long the machine has spent suspended since it booted: a clock that runs through
/// sleep minus one that stops for it. Its growth between two looks means the machine
/// slept and woke in between, with no service (logind, a power manager) to ask: Linux
/// `CLOCK_BOOTTIME` − `CLOCK_MONOTONIC`, macOS `CLOCK_MONOTONIC` − `CLOCK_UPTIME_RAW`,
/// Windows tick count − unbiased interrupt time. `None` where it cannot be read.
pub fn suspended_time() -> Option<std::time::Duration> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let (with_sleep, without_sleep) = (
        clock_time(libc::CLOCK_BOOTTIME)?,
        clock_time(libc::CLOCK_MONOTONIC)?,
    );
    #[cfg(target_vendor = "apple")]
    let (with_sleep, without_sleep) = (
        clock_time(libc::CLOCK_MONOTONIC)?,
        clock_time(libc::CLOCK_UPTIME_RAW)?,
    );
    #[cfg(windows)]
    let (with_sleep, without_sleep) = {
        use windows_sys::Win32::System::SystemInformation::GetTickCount64;
        use windows_sys::Win32::System::WindowsProgramming::QueryUnbiasedInterruptTime;
        let mut without_sleep = 0u64;
        // The tick count goes on while the machine sleeps; the unbiased interrupt time
        // does not. (QueryInterruptTime would be finer, but needs Windows 10 and is
        // missing from wine 8, where sluiced.exe is tested: a tick, 10 to 16 ms, is fine
        // for telling a sleep.)
        // SAFETY: GetTickCount64 takes nothing; the other writes one u64 through a valid
        // pointer to a local.
        let (with_sleep_ms, ok) = unsafe {
            (
                GetTickCount64(),
                QueryUnbiasedInterruptTime(&mut without_sleep),
            )
        };
        if ok == 0 {
            return None;
        }
        (
            std::time::Duration::from_millis(with_sleep_ms),
            // 100-nanosecond units.
            std::time::Duration::from_nanos(without_sleep.saturating_mul(100)),
        )
    };
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        windows
    )))]
    let (with_sleep, without_sleep) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    Some(with_sleep.saturating_sub(without_sleep))
}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn clock_time(clock: libc::clockid_t) -> Option<std::time::Duration> {
    // SAFETY: timespec is plain old data; clock_gettime writes it through a valid pointer.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(std::time::Duration::new(secs, nanos))
}

/// Calls `changed` whenever the machine's addresses or routes change (once per burst:
/// bringing an interface up changes several at once). Runs until the watch fails, and
/// returns why; where the platform offers no watch, returns at once. Linux: a netlink
/// socket on the link, address and route groups; macOS: a routing socket; Windows: the
/// IP Helper's address and route change notifications.
pub async fn watch_network(changed: impl Fn()) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use tokio::io::{Interest, unix::AsyncFd};
        // SAFETY: an OwnedFd's descriptor is valid, stays open while it is owned (here by
        // the AsyncFd) and is the one it always returns.
        let socket = unsafe {
            AsyncFd::register_with_interest(network_change_socket()?, Interest::READABLE)
        }?;
        loop {
            let mut ready = socket.readable().await?;
            let mut relevant = drain_network_messages(ready.get_inner())?;
            ready.clear_ready();
            drop(ready);
            if !relevant {
                continue;
            }
            // The rest of the burst, taken as one change.
            tokio::time::sleep(NETWORK_SETTLE).await;
            relevant = drain_network_messages(socket.get_ref())? || relevant;
            if relevant {
                changed();
            }
        }
    }
    #[cfg(windows)]
    {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let _subscriptions = windows_network::subscribe(sender)?;
        while receiver.recv().await.is_some() {
            tokio::time::sleep(NETWORK_SETTLE).await;
            while receiver.try_recv().is_ok() {}
            changed();
        }
        Ok(())
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        windows
    )))]
    {
        let _ = changed;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this system offers no way to watch the network",
        ))
    }
}

/// How long a burst of network changes is given to settle before it counts as one.
const NETWORK_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

#[cfg(any(target_os = "linux", target_os = "android"))]
fn network_change_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_groups = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE) as u32;
    // SAFETY: the address is a valid sockaddr_nl of the given length.
    let bound = unsafe {
        libc::bind(
            fd,
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(target_vendor = "apple")]
fn network_change_socket() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, libc::AF_UNSPEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain fcntl calls on the descriptor just made.
    let nonblocking = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0
            && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if !nonblocking {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Reads every message waiting on the watch socket; whether any reports a change of
/// addresses, routes or links (a routing socket also carries replies and misses).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn drain_network_messages(socket: &std::os::fd::OwnedFd) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut buffer = [0u8; 8192];
    let mut relevant = false;
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock => Ok(relevant),
                io::ErrorKind::Interrupted => continue,
                // The kernel dropped messages (ENOBUFS): something surely changed.
                _ if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    relevant = true;
                    continue;
                }
                _ => Err(error),
            };
        }
        let message = &buffer[..n.unsigned_abs()];
        relevant |= reports_a_change(message);
    }
}

/// Netlink: the groups joined carry nothing but changes.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reports_a_change(message: &[u8]) -> bool {
    !message.is_empty()
}

/// A routing socket message (`rt_msghdr`: length u16, version u8, type u8, …) of a kind
/// that changes what is reachable: route added, deleted or changed, address added or
/// removed, interface up or down.
#[cfg(target_vendor = "apple")]
fn reports_a_change(message: &[u8]) -> bool {
    const RTM_ADD: u8 = 0x1;
    const RTM_DELETE: u8 = 0x2;
    const RTM_CHANGE: u8 = 0x3;
    const RTM_NEWADDR: u8 = 0xc;
    const RTM_DELADDR: u8 = 0xd;
    const RTM_IFINFO: u8 = 0xe;
    matches!(
        message.get(3),
        Some(&(RTM_ADD | RTM_DELETE | RTM_CHANGE | RTM_NEWADDR | RTM_DELADDR | RTM_IFINFO))
    )
}

/// The IP Helper's change notifications, which call back on a system thread.
#[cfg(windows)]
mod windows_network {
    use std::ffi::c_void;
    use std::io;

    use tokio::sync::mpsc::UnboundedSender;
    use windows_sys::Win32::Foundation::{HANDLE, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        CancelMibChangeNotify2, MIB_IPFORWARD_ROW2, MIB_NOTIFICATION_TYPE,
        MIB_UNICASTIPADDRESS_ROW, NotifyRouteChange2, NotifyUnicastIpAddressChange,
    };
    use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;

    /// The registrations; cancelled (and the sender freed) when dropped.
    pub struct Subscriptions {
        handles: Vec<HANDLE>,
        sender: *mut UnboundedSender<()>,
    }

    // SAFETY: the handles and the boxed sender are only touched on drop, by the owner.
    unsafe impl Send for Subscriptions {}

    impl Drop for Subscriptions {
        fn drop(&mut self) {
            for handle in self.handles.drain(..) {
                // SAFETY: a handle from a successful registration; cancelling waits for
                // callbacks in flight, so the sender outlives them.
                unsafe { CancelMibChangeNotify2(handle) };
            }
            // SAFETY: made by Box::into_raw below; no callback can run any more.
            drop(unsafe { Box::from_raw(self.sender) });
        }
    }

    unsafe extern "system" fn address_changed(
        context: *const c_void,
        _row: *const MIB_UNICASTIPADDRESS_ROW,
        _kind: MIB_NOTIFICATION_TYPE,
    ) {
        // SAFETY: the context is the boxed sender, alive until the registrations end.
        let sender = unsafe { &*context.cast::<UnboundedSender<()>>() };
        let _ = sender.send(());
    }

    unsafe extern "system" fn route_changed(
        context: *const c_void,
        _row: *const MIB_IPFORWARD_ROW2,
        _kind: MIB_NOTIFICATION_TYPE,
    ) {
        // SAFETY: as above.
        let sender = unsafe { &*context.cast::<UnboundedSender<()>>() };
        let _ = sender.send(());
    }

    pub fn subscribe(sender: UnboundedSender<()>) -> io::Result<Subscriptions> {
        let mut subscriptions = Subscriptions {
            handles: Vec::new(),
            sender: Box::into_raw(Box::new(sender)),
        };
        let context = subscriptions.sender.cast::<c_void>().cast_const();
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: a valid callback and context, and a pointer to a local for the handle.
        let result = unsafe {
            NotifyUnicastIpAddressChange(
                AF_UNSPEC,
                Some(address_changed),
                context,
                false,
                &mut handle,
            )
        };
        if result != NO_ERROR {
            return Err(io::Error::from_raw_os_error(result as i32));
        }
        subscriptions.handles.push(handle);
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: as above.
        let result = unsafe {
            NotifyRouteChange2(AF_UNSPEC, Some(route_changed), context, false, &mut handle)
        };
        if result != NO_ERROR {
            return Err(io::Error::from_raw_os_error(result as i32));
        }
        subscriptions.handles.push(handle);
        Ok(subscriptions)
    }
}

/// A listening socket a service manager passed to this process.
#[cfg_attr(
    not(unix),
    expect(dead_code, reason = "only Unix service managers pass sockets")
)]
pub enum InheritedListener {
    Tcp(std::net::TcpListener),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener),
}

/// Why an inherited listening socket cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(
    not(unix),
    expect(dead_code, reason = "only Unix service managers pass sockets")
)]
pub enum InheritedError {
    #[error(
        "no socket named {name:?} was passed to sluiced (passed: {passed}): name it with FileDescriptorName= in the .socket unit, or --fdname= for systemd-socket-activate"
    )]
    NotPassed { name: String, passed: String },
    #[error("the socket named {0:?} is not a listening stream socket")]
    NotListening(String),
    #[error("the socket named {name:?} cannot be used: {reason}")]
    Io { name: String, reason: String },
    #[cfg(not(unix))]
    #[error("taking listening sockets from a service manager is not supported on this system")]
    Unsupported,
}

/// A copy of the listening socket named `name` among those a service manager passed
/// (systemd's socket activation: `LISTEN_PID` naming this process, `LISTEN_FDS` sockets
/// from descriptor 3, `LISTEN_FDNAMES` their names). The passed sockets themselves stay
/// open for the life of the process, so a tunnel that stops and starts again finds its
/// socket still there, with the connections that queued meanwhile.
pub fn inherited_listener(name: &str) -> Result<InheritedListener, InheritedError> {
    #[cfg(unix)]
    {
        use std::os::fd::{FromRawFd, RawFd};
        static PASSED: std::sync::OnceLock<Vec<(String, RawFd)>> = std::sync::OnceLock::new();
        let passed = PASSED.get_or_init(|| {
            let for_us = std::env::var("LISTEN_PID")
                .ok()
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid == std::process::id());
            let count = std::env::var("LISTEN_FDS")
                .ok()
                .and_then(|n| n.parse::<RawFd>().ok())
                .filter(|_| for_us)
                .unwrap_or(0);
            let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
            let mut names = names.split(':');
            (0..count)
                .map(|i| {
                    let fd = 3 + i;
                    // SAFETY: a plain fcntl on a descriptor the service manager passed; it
                    // stays open (and out of any child) for the life of the process.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                    let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown");
                    (name.to_owned(), fd)
                })
                .collect()
        });
        let Some(&(_, fd)) = passed.iter().find(|(passed, _)| passed == name) else {
            let list: Vec<&str> = passed.iter().map(|(n, _)| n.as_str()).collect();
            return Err(InheritedError::NotPassed {
                name: name.to_owned(),
                passed: if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                },
            });
        };
        let io = |e: io::Error| InheritedError::Io {
            name: name.to_owned(),
            reason: e.to_string(),
        };
        let mut listening: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int through valid pointers to locals.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&raw mut listening).cast(),
                &mut len,
            )
        } == 0;
        if !ok || listening == 0 {
            return Err(InheritedError::NotListening(name.to_owned()));
        }
        // SAFETY: a plain fcntl; the copy is a new descriptor owned below.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(io(io::Error::last_os_error()));
        }
        // SAFETY: sockaddr_storage is plain old data; getsockname fills at most `len`.
        let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: as above, on the copy just made.
        let named = unsafe { libc::getsockname(copy, (&raw mut address).cast(), &mut len) } == 0;
        let error = (!named).then(io::Error::last_os_error);
        // SAFETY: `copy` is a fresh descriptor nobody else owns; the wrappers take it.
        let listener = unsafe {
            match i32::from(address.ss_family) {
                libc::AF_UNIX => {
                    InheritedListener::Unix(std::os::unix::net::UnixListener::from_raw_fd(copy))
                }
                _ => InheritedListener::Tcp(std::net::TcpListener::from_raw_fd(copy)),
            }
        };
        match error {
            Some(e) => Err(io(e)),
            None => Ok(listener),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        Err(InheritedError::Unsupported)
    }
}
