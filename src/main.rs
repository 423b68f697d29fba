//! The `tftproxy` command: a thin shell over the library.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tftproxy::client::{self, GetOptions};
use tftproxy::config::{Config, LogFormat};
use tftproxy::tftp::packet::Mode;

const DEFAULT_CONFIG: &str = "/etc/tftproxy/tftproxy.toml";

/// A proxy TFTP server for IP-phone fleets spanning several call-control
/// clusters: serves local files, caches, and fetches the rest from the
/// phone's home cluster over HTTP.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (TFTP, HTTP and admin fronts) until SIGTERM; SIGHUP
    /// reloads the configuration.
    Serve {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log format (overrides `[log] format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Validate a configuration file and print the effective configuration;
    /// exits 1 with the error otherwise.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Download a file over TFTP, for diagnosis: prints size, time and the
    /// options the server acknowledged.
    Get {
        /// Server as HOST or HOST:PORT (port 69 by default; IPv6 as [ADDR]:PORT).
        server: String,
        /// File name to ask for.
        name: String,
        /// Write the file here ("-" for standard output); by default it is
        /// only counted.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Ask for this block size (RFC 2348: 8 to 65464).
        #[arg(long, value_parser = clap::value_parser!(u16).range(8..=65464))]
        blksize: Option<u16>,
        /// Ask for this window size (RFC 7440: 1 to 65535).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        windowsize: Option<u16>,
        /// Ask for the transfer size (RFC 2349).
        #[arg(long)]
        tsize: bool,
        /// Retransmit time-out in seconds, also sent as the timeout option
        /// (RFC 2349: 1 to 255).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        timeout: Option<u8>,
        /// Use netascii mode instead of octet.
        #[arg(long)]
        netascii: bool,
    },
    /// Ask every cluster (every address) for NAME, bypassing the caches, and
    /// print each answer and its time, then what a phone would get and why.
    ///
    /// With --admin, the running daemon is asked instead (its admin API): it
    /// asks every address the same way, and adds what it has learned (the
    /// device's and the client's home cluster, where the name is, each
    /// cluster's cached copy and its age, held-down addresses) and what a
    /// phone at --client would get now. Neither way learns or caches
    /// anything.
    ///
    /// Exit status: 0 a phone would be served, 1 not found, 2 busy or
    /// unreachable (the phone is told to retry later), 3 the name is refused.
    /// A configuration that cannot be loaded, or a daemon that cannot be
    /// asked, also exits 1, with its error on standard error.
    Locate {
        /// Configuration file (not read with --admin).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Ask the running daemon's admin API at ADDR (HOST:PORT, e.g.
        /// 127.0.0.1:9669, or an http:// URL).
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
        /// With --admin: the phone's address, for its learned home cluster.
        #[arg(long, value_name = "IP", requires = "admin")]
        client: Option<std::net::IpAddr>,
        /// With --admin: the file holding the admin bearer token
        /// ([admin] token_file), when the daemon has one.
        #[arg(long, value_name = "FILE", requires = "admin")]
        token_file: Option<PathBuf>,
        /// File name as a phone would ask it.
        name: String,
    },
    /// Print DHCP option 150 (TFTP server address) for these tftproxy
    /// addresses: the value in hex and snippets for ISC dhcpd, Kea, dnsmasq,
    /// Cisco IOS and Windows DHCP.
    #[command(name = "option150")]
    Option150 {
        /// One to four IPv4 addresses, in the order phones should try them.
        #[arg(required = true, value_name = "IP")]
        addresses: Vec<String>,
    },
    /// Write the manual pages (roff, section 1) into DIR: tftproxy.1 and
    /// one tftproxy-<command>.1 per command, as packaging installs them.
    #[command(name = "man", hide = true)]
    Man {
        /// Directory to write the pages into (created if missing).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tftproxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config: path,
            log_format,
        } => {
            let config = Config::load(&path)?;
            let format_override = log_format.map(|f| match f {
                LogFormatArg::Json => LogFormat::Json,
                LogFormatArg::Text => LogFormat::Text,
            });
            let logging = tftproxy::logging::init(&config.log, format_override);
            runtime()?.block_on(tftproxy::daemon::run(path, config, logging))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config: path } => match Config::load(&path) {
            Ok(config) => {
                print!("{}", config.render());
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{error}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Get {
            server,
            name,
            output,
            blksize,
            windowsize,
            tsize,
            timeout,
            netascii,
        } => {
            let server = parse_server(&server)?;
            let options = GetOptions {
                block_size: blksize,
                window_size: windowsize,
                tsize,
                timeout_option: timeout,
                retransmit: Duration::from_secs(u64::from(timeout.unwrap_or(1))),
                mode: if netascii {
                    Mode::Netascii
                } else {
                    Mode::Octet
                },
                ..GetOptions::default()
            };
            let download = runtime()?.block_on(client::get(server, &name, &options));
            let download = match download {
                Ok(download) => download,
                Err(error) => {
                    eprintln!("{server} {name}: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            match output.as_deref() {
                Some(path) if path.as_os_str() == "-" => {
                    use std::io::Write;
                    std::io::stdout().write_all(&download.data)?;
                }
                Some(path) => std::fs::write(path, &download.data)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {}
            }
            let secs = download.elapsed.as_secs_f64();
            let options: Vec<String> = download
                .negotiated
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprintln!(
                "{name}: {} bytes in {:.3} s ({:.1} KiB/s); options: {}",
                download.data.len(),
                secs,
                download.data.len() as f64 / 1024.0 / secs.max(1e-9),
                if options.is_empty() {
                    "none".to_owned()
                } else {
                    options.join(" ")
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Locate {
            admin: Some(admin),
            client,
            token_file,
            name,
            ..
        } => locate_admin(&admin, client, token_file.as_deref(), &name),
        Command::Locate {
            config: path, name, ..
        } => {
            let mut config = Config::load(&path)?;
            // `locate` bypasses the caches; the running daemon owns its
            // cache directory (its start-up deletes unfinished writes).
            config.cache.dir = None;
            let report = runtime()?.block_on(async {
                let metrics = std::sync::Arc::new(tftproxy::metrics::Metrics::new());
                let resolver = tftproxy::resolve::Resolver::new(&config, metrics)?;
                anyhow::Ok(tftproxy::diagnose::locate(&resolver, &name).await)
            })?;
            print!("{}", tftproxy::diagnose::render(&report));
            Ok(ExitCode::from(report.verdict.exit_code()))
        }
        Command::Man { dir } => {
            use clap::CommandFactory as _;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Option150 { addresses } => {
            use tftproxy::option150;
            let addresses = match option150::parse_addresses(&addresses) {
                Ok(addresses) => addresses,
                Err(error) => {
                    eprintln!("tftproxy option150: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if let Some(warning) = option150::warning(&addresses) {
                eprintln!("warning: {warning}");
            }
            print!("{}", option150::render(&addresses));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `locate --admin`: the daemon's report, printed; its verdict, the status.
fn locate_admin(
    admin: &str,
    client: Option<std::net::IpAddr>,
    token_file: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let base = if admin.contains("://") {
        admin.trim_end_matches('/').to_owned()
    } else {
        format!("http://{admin}")
    };
    let token = token_file
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;
    let mut query = vec![("name", name.to_owned())];
    if let Some(client) = client {
        query.push(("client", client.to_string()));
    }
    let url = format!("{base}/locate");
    let body: serde_json::Value = runtime()?.block_on(async {
        let mut request = reqwest::Client::new().get(&url).query(&query);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("asking the daemon at {base}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "the daemon at {base} answered {status}: {}{}",
            text.trim(),
            if status == reqwest::StatusCode::UNAUTHORIZED {
                " (give its admin token with --token-file)"
            } else {
                ""
            }
        );
        serde_json::from_str(&text).with_context(|| format!("{url}: not a locate report"))
    })?;
    let (Some(text), Some(code)) = (body["text"].as_str(), body["exit_code"].as_u64()) else {
        anyhow::bail!("{url}: not a locate report");
    };
    print!("{text}");
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address; port 69 by default.
fn parse_server(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 69));
    }
    let with_port = if text.contains(':') {
        text.to_owned()
    } else {
        format!("{text}:69")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server {text:?}"))?
        .next()
        .with_context(|| format!("server {text:?} has no address"))
}
