//! The second floor: the components a pipeline is made of, the host's own
//! built-ins and plugin libraries loaded through the C ABI. Components import
//! only from [`core`](crate::core).

pub(crate) mod builtins;
pub(crate) mod plugin;
