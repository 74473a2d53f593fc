//! `osteoscreen serve`: wire the stages together and run until SIGTERM / SIGINT.
//! Shutdown order: stop accepting, let each association finish its current message,
//! wait for every task's `Done`, then exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::ingest::active::ActiveStudies;
use crate::ingest::{spool::Spool, Ingest};
use crate::ops::systemd;
use crate::pipeline::assembler;
use crate::shutdown::ShutdownTrigger;
use crate::store::Store;

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let dir = settings.storage.dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create storage dir {}", dir.display()))?;
    let store = Arc::new(Store::open(&Store::path_in(&dir))?);
    let spool =
        Spool::open(&dir).with_context(|| format!("cannot open spool in {}", dir.display()))?;
    let recovery = crate::ingest::recover::reconcile(spool.root(), &store)?;
    if recovery.recovered > 0 {
        tracing::warn!(
            instances = recovery.recovered,
            "recorded spool files the database had lost (power loss or database removed)"
        );
    }
    for path in &recovery.unreadable {
        tracing::error!(path = %path.display(), "unreadable file in the spool; left in place");
    }
    let addr = settings.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let active = ActiveStudies::default();
    let ingest = Arc::new(Ingest {
        callers: settings.caller_rules()?,
        settings: settings.dicom.clone(),
        spool,
        writer: store.instance_writer()?,
        active: active.clone(),
        storage_dir: dir.clone(),
    });

    let trigger = ShutdownTrigger::new();
    tokio::spawn(crate::ingest::listener::run(
        listener,
        ingest,
        trigger.subscribe(),
        trigger.done_guard(),
    ));
    tokio::spawn(assembler::run(
        store.clone(),
        active,
        Duration::from_secs(settings.dicom.study_stable_seconds),
        trigger.subscribe(),
        trigger.done_guard(),
    ));
    tokio::spawn(systemd::watchdog(store.clone(), trigger.subscribe()));

    tracing::info!(
        ae_title = %settings.dicom.ae_title,
        listen = %addr,
        storage = %dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "osteoscreen ready"
    );
    systemd::ready();

    wait_for_signal().await?;
    tracing::info!("shutdown requested: finishing in-flight stores");
    systemd::stopping();
    trigger.trigger();
    trigger.wait().await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
