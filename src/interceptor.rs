//! Interceptors: code that adjusts the request context of every RPC a client sends.
//!
//! client-go lets callers stamp requests with a request source, a resource group, a priority
//! or a disk-full policy. Here an [`Interceptor`] sees each request's `kvrpcpb::Context`
//! just before it is sent; a client holds a chain of them, applied in order. [`ContextOptions`]
//! covers the common fields; implement the trait for anything else.
//!
//! ```
//! use tikv_client::interceptor::{ContextOptions, Interceptor};
//! use tikv_client::proto::kvrpcpb;
//!
//! let opts = ContextOptions::default()
//!     .request_source("batch-import")
//!     .priority(kvrpcpb::CommandPri::Low);
//! let mut ctx = kvrpcpb::Context::default();
//! opts.before_send("RawPut", &mut ctx);
//! assert_eq!(ctx.request_source, "batch-import");
//! assert_eq!(ctx.priority, kvrpcpb::CommandPri::Low as i32);
//! ```

use std::fmt;
use std::sync::Arc;

use crate::proto::kvrpcpb;
use crate::rt::{MaybeSend, MaybeSync};

/// Adjusts the context of each request before it is sent.
pub trait Interceptor: fmt::Debug + MaybeSend + MaybeSync {
    /// Called with the gRPC method name (`"RawGet"`, `"KvPrewrite"`, ...) and the context
    /// the client filled in (region, epoch, peer, API version).
    fn before_send(&self, method: &str, ctx: &mut kvrpcpb::Context);
}

/// A chain of interceptors, applied in the order they were added.
#[derive(Clone, Default, Debug)]
pub struct Interceptors(Vec<Arc<dyn Interceptor>>);

impl Interceptors {
    /// The chain with `interceptor` appended.
    pub fn with(mut self, interceptor: impl Interceptor + 'static) -> Self {
        self.0.push(Arc::new(interceptor));
        self
    }

    /// This chain followed by every interceptor of `later`.
    pub fn extend(mut self, later: &Interceptors) -> Self {
        self.0.extend(later.0.iter().cloned());
        self
    }

    /// Runs every interceptor on `ctx`.
    pub fn apply(&self, method: &str, ctx: &mut kvrpcpb::Context) {
        for i in &self.0 {
            i.before_send(method, ctx);
        }
    }
}

/// Sets common context fields: request source, resource group, priority, disk-full policy,
/// transaction source.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct ContextOptions {
    request_source: Option<String>,
    resource_group_name: Option<String>,
    resource_group_tag: Option<Vec<u8>>,
    priority: Option<kvrpcpb::CommandPri>,
    disk_full_opt: Option<kvrpcpb::DiskFullOpt>,
    txn_source: Option<u64>,
}

impl ContextOptions {
    /// Labels requests with where they come from (shown in TiKV's metrics).
    pub fn request_source(mut self, source: impl Into<String>) -> Self {
        self.request_source = Some(source.into());
        self
    }

    /// Runs requests under this resource group.
    pub fn resource_group_name(mut self, name: impl Into<String>) -> Self {
        self.resource_group_name = Some(name.into());
        self
    }

    /// Tags requests for TiKV's resource metering.
    pub fn resource_group_tag(mut self, tag: impl Into<Vec<u8>>) -> Self {
        self.resource_group_tag = Some(tag.into());
        self
    }

    /// Sets the scheduling priority.
    pub fn priority(mut self, priority: kvrpcpb::CommandPri) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets whether writes may proceed on an almost-full disk.
    pub fn disk_full_opt(mut self, opt: kvrpcpb::DiskFullOpt) -> Self {
        self.disk_full_opt = Some(opt);
        self
    }

    /// Marks requests with the source of the transaction (CDC uses it to filter replicated
    /// writes out of changefeeds).
    pub fn txn_source(mut self, source: u64) -> Self {
        self.txn_source = Some(source);
        self
    }
}

impl Interceptor for ContextOptions {
    fn before_send(&self, _method: &str, ctx: &mut kvrpcpb::Context) {
        if let Some(s) = &self.request_source {
            ctx.request_source = s.clone();
        }
        if let Some(name) = &self.resource_group_name {
            ctx.resource_control_context
                .get_or_insert_with(Default::default)
                .resource_group_name = name.clone();
        }
        if let Some(tag) = &self.resource_group_tag {
            ctx.resource_group_tag = tag.clone();
        }
        if let Some(p) = self.priority {
            ctx.priority = p as i32;
        }
        if let Some(d) = self.disk_full_opt {
            ctx.disk_full_opt = d as i32;
        }
        if let Some(source) = self.txn_source {
            ctx.txn_source = source;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Tag(&'static str);
    impl Interceptor for Tag {
        fn before_send(&self, method: &str, ctx: &mut kvrpcpb::Context) {
            ctx.request_source = format!("{}{}:{method}", ctx.request_source, self.0);
        }
    }

    #[test]
    fn chains_apply_in_order() {
        let chain = Interceptors::default().with(Tag("a")).with(Tag("b"));
        let mut ctx = kvrpcpb::Context::default();
        chain.apply("RawGet", &mut ctx);
        assert_eq!(ctx.request_source, "a:RawGetb:RawGet");
    }

    #[test]
    fn context_options_set_every_field() {
        let opts = ContextOptions::default()
            .request_source("src")
            .resource_group_name("rg")
            .resource_group_tag(b"tag".to_vec())
            .priority(kvrpcpb::CommandPri::High)
            .disk_full_opt(kvrpcpb::DiskFullOpt::AllowedOnAlmostFull)
            .txn_source(7);
        let mut ctx = kvrpcpb::Context::default();
        opts.before_send("RawPut", &mut ctx);
        assert_eq!(ctx.request_source, "src");
        assert_eq!(
            ctx.resource_control_context.unwrap().resource_group_name,
            "rg"
        );
        assert_eq!(ctx.resource_group_tag, b"tag");
        assert_eq!(ctx.priority, kvrpcpb::CommandPri::High as i32);
        assert_eq!(
            ctx.disk_full_opt,
            kvrpcpb::DiskFullOpt::AllowedOnAlmostFull as i32
        );
        assert_eq!(ctx.txn_source, 7);
    }
}
