//! The error contract: eight stable kinds that scripts match on, and a message that says what happened
//! and what to try. Expected outcomes on the hot path (partial input, clean close) are not errors; see
//! `http::response::Step` and `engine::conn`.

use std::fmt;
use std::io;

/// The stable error kinds of the JSONL contract. Their spelling (`as_str`) never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    InvalidUrl,
    Dns,
    Connect,
    Tls,
    Timeout,
    Protocol,
    Io,
    TooLarge,
    /// A bug in ringfetch: a connection task panicked with this URL on it (the panic's message is on
    /// stderr). Its other URLs and the run carry on.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::InvalidUrl,
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::TooLarge,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUrl => "invalid-url",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::Internal => "internal",
        }
    }

    /// Index into per-kind counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One URL's failure: a kind for scripts and a message for people. Displays as `kind: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct FetchError {
    pub kind: ErrorKind,
    pub message: String,
    /// The OS error behind a failed connect, for the one the engine acts on (EADDRNOTAVAIL: see
    /// `no_local_port`); None otherwise.
    pub errno: Option<i32>,
}

impl FetchError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> FetchError {
        FetchError {
            kind,
            message: message.into(),
            errno: None,
        }
    }

    /// The connect failed for want of a free local port toward its address: every port of the
    /// ephemeral range is held by a connection to it (or in TIME_WAIT). Closing one of ours frees one.
    pub fn no_local_port(&self) -> bool {
        self.errno == Some(libc::EADDRNOTAVAIL)
    }

    /// Classifies an I/O error from a connection that was established. EMFILE and EADDRNOTAVAIL are
    /// named, because reporting them as plain "connect errors" hides the fix (wrk#47).
    /// A transport's own error travels inside the `io::Error` (TLS) and comes out unchanged.
    pub fn io(context: &str, err: &io::Error) -> FetchError {
        if let Some(own) = err.get_ref().and_then(|e| e.downcast_ref::<FetchError>()) {
            return own.clone();
        }
        FetchError::new(ErrorKind::Io, format!("{context}: {}", describe(err)))
    }

    /// Classifies a failure to establish a connection to `addr`.
    pub fn connect(addr: &str, err: &io::Error) -> FetchError {
        let hint = match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => "; is a server listening there?",
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                "; out of file descriptors: lower -c or raise `ulimit -n`"
            }
            Some(libc::EADDRNOTAVAIL) => {
                "; no free local port toward this address: lower -c or widen net.ipv4.ip_local_port_range"
            }
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "; check the address and routes",
            _ => "",
        };
        FetchError {
            errno: err.raw_os_error(),
            ..FetchError::new(
                ErrorKind::Connect,
                format!("cannot connect to {addr}: {}{hint}", describe(err)),
            )
        }
    }
}

/// `io::Error`'s Display appends "(os error N)"; keep the text and drop the noise. Every message built
/// from an OS error goes through here.
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A usage or configuration error: printed on stderr, exit code 2, nothing fetched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_spell_the_contract() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid-url",
                "dns",
                "connect",
                "tls",
                "timeout",
                "protocol",
                "io",
                "too-large",
                "internal"
            ]
        );
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn display_is_kind_colon_message() {
        let e = FetchError::new(ErrorKind::TooLarge, "body over 10 bytes");
        assert_eq!(e.to_string(), "too-large: body over 10 bytes");
    }

    #[test]
    fn connect_refused_says_what_to_check() {
        let err = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = FetchError::connect("127.0.0.1:9", &err);
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(e.message.contains("127.0.0.1:9"), "{}", e.message);
        assert!(e.message.contains("refused"), "{}", e.message);
        assert!(!e.message.contains("os error"), "{}", e.message);
    }
}

/// Why a command could not run to its end: the user's to fix (a usage error, exit 2), or the
/// system's (exit 1). Usage errors found only once the engine has probed the machine (`--strict`
/// clamps, `--source-addrs` with tcp) travel as `Usage` too, typed all the way.
#[derive(Debug)]
pub enum Failure {
    Usage(UsageError),
    Io(std::io::Error),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}
