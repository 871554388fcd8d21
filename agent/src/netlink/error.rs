//! Typed errors of the netlink module.

/// What went wrong while talking to the kernel over rtnetlink.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The rtnetlink socket could not be opened (no `CAP_NET_ADMIN` is not this: that shows on
    /// the first request).
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(#[source] std::io::Error),

    /// No interface has this name in the current network namespace.
    #[error("no network interface named {name:?}")]
    LinkNotFound { name: String },

    /// The kernel refused a request. `operation` says which, in words.
    #[error("{operation}: {source}")]
    Request {
        operation: String,
        #[source]
        source: std::io::Error,
    },

    /// The kernel refused a request for a reason it did not state as an errno, or the
    /// connection to it broke.
    #[error("{operation}: {detail}")]
    Protocol { operation: String, detail: String },
}

impl NetlinkError {
    /// Wraps an rtnetlink error, keeping the kernel's errno as an [`std::io::Error`] when there is
    /// one, so that the message reads like `ip`'s ("File exists", "Operation not permitted").
    pub(crate) fn from_rtnetlink(operation: impl Into<String>, error: rtnetlink::Error) -> Self {
        let operation = operation.into();
        match error {
            rtnetlink::Error::NetlinkError(message) if message.code.is_some() => {
                NetlinkError::Request {
                    operation,
                    source: message.to_io(),
                }
            }
            other => NetlinkError::Protocol {
                operation,
                detail: other.to_string(),
            },
        }
    }

    /// The kernel's errno for this error, if it gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
