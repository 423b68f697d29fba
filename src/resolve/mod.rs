//! Which bytes answer a name. Everything that decides that lives here; the
//! TFTP and HTTP front ends only speak their protocol and never know about
//! clusters.
//!
//! The order (DESIGN.md): normalise and classify the name, refusing unsafe
//! ones; the phone's home cluster first for cluster-specific names when it is
//! known; the local root; the caches; then the remote clusters over HTTP.

pub mod upstream;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::body::Body;
use crate::config::Config;
use crate::local::{LocalError, LocalRoot};
use crate::metrics::{Front, Metrics};
use crate::name::{self, NameError};

/// One read request, as the resolver sees it.
#[derive(Clone, Debug)]
pub struct Lookup<'a> {
    /// The name as the phone sent it.
    pub name: &'a str,
    /// The phone's address (learns and uses home clusters).
    pub client: IpAddr,
    pub front: Front,
    /// The request came from another proxy (it carried our `Via`): answer
    /// from local files and caches only, never forward (no loops).
    pub from_proxy: bool,
}

/// Where an answer came from (for logs and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Cache { cluster: Arc<str> },
    Cluster { cluster: Arc<str> },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local => f.write_str("local"),
            Source::Cache { cluster } => write!(f, "cache:{cluster}"),
            Source::Cluster { cluster } => write!(f, "cluster:{cluster}"),
        }
    }
}

/// The resolver's verdict on a lookup.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Serve this body. `name` is the normalised name.
    File { body: Body, source: Source },
    /// Nobody has it (TFTP error 1, HTTP 404).
    NotFound,
    /// Someone who may have it is busy or unreachable: the phone must retry
    /// (TFTP error 0 `busy, retry later`, HTTP 503).
    RetryLater,
    /// The name is unsafe or unreadable here (TFTP error 2, HTTP 403).
    Denied(String),
}

/// A resolver that a config reload can replace while requests run.
pub type SharedResolver = Arc<ArcSwap<Resolver>>;

/// Decides which bytes answer a name.
pub struct Resolver {
    local: Option<LocalRoot>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

/// The resolver cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("tftp.root {path}: {source}")]
    Root { path: String, source: std::io::Error },
    #[error("remote clusters: {0}")]
    Upstream(String),
}

impl Resolver {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Resolver, ResolverError> {
        let local = match &config.tftp.root {
            Some(path) => Some(
                LocalRoot::new(path)
                    .map_err(|source| ResolverError::Root { path: path.display().to_string(), source })?,
            ),
            None => None,
        };
        Ok(Resolver { local, metrics })
    }

    /// Answers one lookup.
    pub async fn resolve(&self, lookup: &Lookup<'_>) -> Answer {
        let name = match name::normalise(lookup.name) {
            Ok(name) => name,
            Err(error) => return denied(error),
        };
        if let Some(local) = &self.local {
            match local.open(&name) {
                Ok(Some(body)) => return Answer::File { body, source: Source::Local },
                Ok(None) => {}
                Err(error @ (LocalError::OutsideRoot(_) | LocalError::NotAFile(_))) => {
                    return Answer::Denied(error.to_string())
                }
                Err(error) => {
                    tracing::warn!(%error, "local root");
                    return Answer::Denied(error.to_string());
                }
            }
        }
        Answer::NotFound
    }
}

fn denied(error: NameError) -> Answer {
    Answer::Denied(error.to_string())
}
