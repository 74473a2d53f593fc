//! `osteoscreen echo` and `send`: the C-ECHO / C-STORE SCU from the command line, for
//! checking a link or loading studies.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use osteoscreen::config::Settings;
use osteoscreen::deliver::dimse::{self, Peer};
use osteoscreen::dicom::command::command_text;
use osteoscreen::dicom::files::collect_files;

/// The remote node and how to reach it.
#[derive(Args)]
pub struct PeerArgs {
    /// Host name or IP address of the remote node.
    #[arg(long)]
    pub host: String,
    /// TCP port of the remote node.
    #[arg(long)]
    pub port: u16,
    /// The remote node's AE title.
    #[arg(long, value_name = "AE")]
    pub called_ae: String,
    /// Our AE title (default: [dicom] ae_title).
    #[arg(long, value_name = "AE")]
    pub calling_ae: Option<String>,
    /// Seconds to wait for connection and each response.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// DICOM TLS: the CA certificate (PEM) that signs the remote node's certificate.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// DICOM TLS: our certificate (PEM), when the remote node asks for one.
    #[arg(long, value_name = "PEM", requires = "tls_ca", requires = "tls_key")]
    pub tls_certificate: Option<PathBuf>,
    /// DICOM TLS: the private key (PEM) of --tls-certificate.
    #[arg(long, value_name = "PEM", requires = "tls_certificate")]
    pub tls_key: Option<PathBuf>,
}

impl PeerArgs {
    fn peer(&self, settings: &Settings) -> anyhow::Result<Peer> {
        let path = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
        let tls = osteoscreen::deliver::tls_client(
            &path(&self.tls_ca),
            &path(&self.tls_certificate),
            &path(&self.tls_key),
            &self.host,
        )
        .context("DICOM TLS")?;
        Ok(Peer {
            tls,
            host: self.host.clone(),
            port: self.port,
            called_ae: self.called_ae.clone(),
            calling_ae: self
                .calling_ae
                .clone()
                .unwrap_or_else(|| settings.dicom.ae_title.clone()),
            max_pdu_length: settings.dicom.max_pdu_length,
            timeout: Duration::from_secs(self.timeout),
        })
    }
}

/// `osteoscreen echo`: one C-ECHO, its status printed.
pub async fn echo(args: &PeerArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let status = dimse::echo(&args.peer(settings)?).await?;
    println!(
        "C-ECHO {}:{} {}: {status}",
        args.host, args.port, args.called_ae
    );
    Ok(super::exit_code(status.is_success()))
}

/// `osteoscreen send`: C-STORE every file, a line per file and a summary.
pub async fn send(
    args: &PeerArgs,
    paths: &[PathBuf],
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let files = collect_files(paths).context("cannot list input files")?;
    let outcomes = dimse::send_files(&args.peer(settings)?, &files).await;
    let mut failed = 0;
    for o in &outcomes {
        match &o.result {
            Ok((status, comment)) => {
                let word = if o.stored() { "OK     " } else { "FAILED " };
                failed += usize::from(!o.stored());
                // The peer's words reach a terminal: no control characters, bounded.
                let note = command_text(comment.as_deref().unwrap_or("").trim(), 128);
                println!("{word} {} {status} {note}", o.path.display());
            }
            Err(reason) => {
                failed += 1;
                println!("FAILED  {}: {reason}", o.path.display());
            }
        }
    }
    println!(
        "sent {} of {} files, {failed} failed",
        outcomes.len() - failed,
        outcomes.len()
    );
    Ok(super::exit_code(failed == 0))
}
