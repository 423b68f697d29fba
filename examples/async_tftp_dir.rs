//! async-tftp's read-only directory server, as a peer for the boot-storm
//! benchmark (`benches/run.sh`).
//!
//!     cargo run --release --example async_tftp_dir -- DIR 127.0.0.1:16971
//!
//! It runs with async-tftp's defaults (block size limit, 3 s timeout, retries)
//! on a tokio runtime, the way its own `tftpd-dir` example does.

use async_tftp::server::TftpServerBuilder;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:6969".into())
        .parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let server = TftpServerBuilder::with_dir_ro(&dir)?
                .bind(addr)
                .build()
                .await?;
            eprintln!("async-tftp serving {dir} on {}", server.listen_addr()?);
            server.serve().await?;
            Ok(())
        })
}
