//! Who may use the daemon: the `[admin]` section (its token file, and the
//! rule that an admin API off loopback needs one).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::raw;
use super::render::quote;
use super::validate::{Ctx, Res};
use super::AdminConfig;

impl Ctx<'_> {
    pub(super) fn admin(&self, a: raw::Admin) -> Res<AdminConfig> {
        let listen = match a.listen {
            Some(s) => self.socket_addr("admin.listen", &s, "\"127.0.0.1:9669\"")?,
            None => AdminConfig::default().listen,
        };
        let token_file = match a.token_file {
            None => None,
            Some(f) => Some(self.token_file(&f)?),
        };
        if token_file.is_none() && !is_loopback(listen) {
            return Err(self.err(
                "admin.listen",
                format!(
                    "{listen} is not a loopback address: set admin.token_file as well, or \
                     anyone who reaches it can purge the cache"
                ),
            ));
        }
        Ok(AdminConfig { listen, token_file })
    }

    /// `admin.token_file`: a readable file holding one token.
    fn token_file(&self, f: &str) -> Res<PathBuf> {
        const KEY: &str = "admin.token_file";
        if f.trim().is_empty() {
            return Err(self.err(KEY, "must be the path of a file holding a token, got \"\""));
        }
        let path = PathBuf::from(f);
        read_token(&path).map_err(|e| {
            self.err(
                KEY,
                format!(
                    "file {} {e} (a relative path is relative to the current directory)",
                    quote(f)
                ),
            )
        })?;
        Ok(path)
    }
}

/// Loopback, IPv4-mapped loopback included.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The admin token in `path`: the file's text without surrounding white
/// space (a trailing newline), at least 16 visible ASCII characters without
/// spaces, so that it fits an `Authorization: Bearer` header as written.
/// The error completes "file X …".
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    const MIN_LEN: usize = 16;
    const MAX_LEN: usize = 4096;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_LEN as u64 {
        return Err(format!("must be a regular file of at most {MAX_LEN} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let token = text.trim();
    if token.len() < MIN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must hold one token of at least {MIN_LEN} visible ASCII characters \
             (no spaces), like the output of `openssl rand -hex 32`"
        ));
    }
    Ok(token.to_owned())
}
