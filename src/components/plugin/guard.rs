//! The one way the host writes an `extern "C"` function a plugin can call.
//!
//! [`host_callback!`] wraps the body in `catch_unwind` (host code must never
//! unwind into a plugin's frames: since Rust 1.81 that aborts the process) and
//! checks the listed pointer arguments for NULL before the body runs. Each use
//! names the value returned on a NULL and on a panic, so every callback has a
//! defined answer to a misbehaving caller.
//!
//! ```ignore
//! host_callback! {
//!     /// Returns `PH_ERR` on a NULL `this`/`chunk` or a panic.
//!     fn host_body_next(this: *mut c_void, chunk: *mut PhStr) -> i32;
//!     non_null(this, chunk) else abi::PH_ERR;
//!     on_panic abi::PH_ERR;
//!     { /* body: may use `return`, must use `unsafe {}` blocks with SAFETY comments */ }
//! }
//! ```
//!
//! A function without a return value leaves out `-> T`, `else` and `on_panic`
//! (both answers are then "do nothing"). `else { ... }` may run code (it runs
//! inside the `catch_unwind` too), e.g. to release a body the call consumes.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Define an `unsafe extern "C" fn` handed to plugins; see the module docs.
macro_rules! host_callback {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
        non_null($($ptr:ident),*) else $on_null:expr;
        on_panic $on_panic:expr;
        $body:block
    ) => {
        $(#[$meta])*
        $vis unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            $crate::components::plugin::guard::run(stringify!($name), || $on_panic, || {
                $(
                    if $ptr.is_null() {
                        $crate::components::plugin::guard::null_argument(
                            stringify!($name),
                            stringify!($ptr),
                        );
                        return $on_null;
                    }
                )*
                $body
            })
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?);
        non_null($($ptr:ident),*);
        $body:block
    ) => {
        $(#[$meta])*
        $vis unsafe extern "C" fn $name($($arg: $ty),*) {
            $crate::components::plugin::guard::run(stringify!($name), || (), || {
                $(
                    if $ptr.is_null() {
                        $crate::components::plugin::guard::null_argument(
                            stringify!($name),
                            stringify!($ptr),
                        );
                        return;
                    }
                )*
                $body
            })
        }
    };
}
pub(crate) use host_callback;

/// Run a callback's body; a panic is logged and answered with `on_panic()`.
/// Nothing escapes: a panic while logging is swallowed too.
pub(crate) fn run<T>(name: &str, on_panic: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let message = panic_message(&*payload);
            // Dropping the payload runs host code too: keep it inside a guard.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            let _ = catch_unwind(AssertUnwindSafe(|| {
                tracing::error!(
                    "host callback `{name}` panicked ({message}); the plugin gets an error"
                )
            }));
            on_panic()
        }
    }
}

/// Log that a plugin passed NULL where `name` needs a pointer.
pub(crate) fn null_argument(name: &str, arg: &str) {
    let _ = catch_unwind(|| {
        tracing::error!(
            "a plugin called host callback `{name}` with a NULL `{arg}`; the call is refused"
        )
    });
}

/// Read a function-pointer field that foreign code may have left NULL, without
/// ever holding a NULL in a (non-nullable) `fn` type: `None` for NULL.
///
/// # Safety
/// `field` must be valid for reading a `F`, and `F` must be a function pointer type.
pub(crate) unsafe fn nullable_fn<F: Copy>(field: *const F) -> Option<F> {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*const ()>()) };
    // SAFETY: guaranteed by the caller; a function pointer has the size and
    // representation of a data pointer on every platform the host supports, so its
    // bits can be read as one (any bits are a valid raw pointer).
    let bits = unsafe { field.cast::<*const ()>().read_unaligned() };
    if bits.is_null() {
        None
    } else {
        // SAFETY: non-NULL, so a valid value of the function pointer type.
        Some(unsafe { field.read_unaligned() })
    }
}

/// A panic payload as text.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".into()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    host_callback! {
        /// Test callback: 1 on success, -7 on NULL, -9 on panic.
        fn probe(this: *mut c_void, boom: bool) -> i32;
        non_null(this) else -7;
        on_panic -9;
        {
            if boom {
                panic!("boom");
            }
            1
        }
    }

    host_callback! {
        fn probe_void(this: *mut c_void);
        non_null(this);
        {
            // SAFETY: the test passes a valid `u32`.
            unsafe { *this.cast::<u32>() += 1 };
            panic!("after the write");
        }
    }

    #[test]
    fn answers_null_and_panic_with_the_declared_values() {
        let mut x = 0u32;
        let p: *mut c_void = (&mut x as *mut u32).cast();
        // SAFETY: the callbacks accept any pointer; NULL is refused.
        unsafe {
            assert_eq!(probe(p, false), 1);
            assert_eq!(probe(std::ptr::null_mut(), false), -7);
            assert_eq!(probe(p, true), -9);
            probe_void(std::ptr::null_mut());
            probe_void(p);
        }
        assert_eq!(x, 1);
    }
}
