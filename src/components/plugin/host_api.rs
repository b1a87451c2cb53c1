//! The service table the host hands every plugin factory, and the error sink.

use std::ffi::c_void;

use plughost_sdk::abi::{self, PhErrorSink, PhHost, PhStr};

use super::guard::host_callback;

/// Lives for the whole process, as the ABI promises.
pub(crate) static HOST_API: PhHost = PhHost {
    struct_size: std::mem::size_of::<PhHost>() as u32,
    abi_major: abi::PH_ABI_MAJOR,
    abi_minor: abi::PH_ABI_MINOR,
    log: host_log,
};

/// Borrowed bytes from a plugin call as text.
///
/// # Safety
/// `s` must be valid for the duration of the call.
pub(crate) unsafe fn lossy(s: PhStr) -> String {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { s.as_bytes() };
    // Checked first: `from_utf8` costs a fraction of `from_utf8_lossy` on valid text.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

host_callback! {
    /// `PhHost::log`. No pointer arguments (a string with a NULL `ptr` is empty);
    /// a panic (a formatting or subscriber bug) logs nothing and returns.
    fn host_log(level: i32, target: PhStr, message: PhStr);
    non_null();
    {
        // SAFETY: the ABI says both strings are valid for this call.
        let (target, message) = unsafe { (lossy(target), lossy(message)) };
        match level {
            abi::PH_LOG_ERROR => tracing::error!(target: "plugin", plugin = %target, "{message}"),
            abi::PH_LOG_WARN => tracing::warn!(target: "plugin", plugin = %target, "{message}"),
            abi::PH_LOG_INFO => tracing::info!(target: "plugin", plugin = %target, "{message}"),
            abi::PH_LOG_DEBUG => tracing::debug!(target: "plugin", plugin = %target, "{message}"),
            _ => tracing::trace!(target: "plugin", plugin = %target, "{message}"),
        }
    }
}

/// Collects the message a plugin reports through a [`PhErrorSink`].
#[derive(Default)]
pub(crate) struct ErrorSink {
    pub message: Option<String>,
}

impl ErrorSink {
    /// The raw sink pointing at `self`; valid while `self` is borrowed.
    pub(super) fn raw(&mut self) -> PhErrorSink {
        PhErrorSink {
            this: (self as *mut ErrorSink).cast(),
            set: sink_set,
        }
    }
}

host_callback! {
    /// `PhErrorSink::set`. A NULL `this` or a panic drops the message.
    fn sink_set(this: *mut c_void, message: PhStr);
    non_null(this);
    {
        // SAFETY: `this` is the `ErrorSink` borrowed for the call that received the
        // sink; the message is valid for this call and is copied.
        unsafe { (*this.cast::<ErrorSink>()).message = Some(lossy(message)) };
    }
}
