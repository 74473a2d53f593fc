//! `osteoscreen serve`: wire the stages together and run until SIGTERM / SIGINT; SIGHUP
//! reloads destinations, priorities and the log level from the settings file.
//! Shutdown order: stop accepting, let each association finish its current message,
//! each worker its current study and each destination its current batch, wait for
//! every task's `Done`, then exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::analysis::site_adapt::SiteAdaptation;
use crate::analysis::Engine;
use crate::config::Settings;
use crate::deliver::{Deliverer, Routes};
use crate::ingest::active::ActiveStudies;
use crate::ingest::listener::{self, Endpoint};
use crate::ingest::slots::Slots;
use crate::ingest::stow::StowService;
use crate::ingest::{spool::Spool, Ingest};
use crate::ops::health::Health;
use crate::ops::http;
use crate::ops::systemd;
use crate::pipeline::assembler;
use crate::pipeline::worker::Workers;
use crate::shutdown::ShutdownTrigger;
use crate::store::Store;
use crate::supervise::Supervisor;
use crate::wake::Wake;

/// What SIGHUP can change while the daemon runs.
struct Reloadable {
    config_file: Option<PathBuf>,
    routes: watch::Sender<Arc<Routes>>,
    pipeline: watch::Sender<Arc<crate::pipeline::settings::PipelineSettings>>,
}

pub async fn serve(settings: Settings, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = settings.storage.dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create storage dir {}", dir.display()))?;
    // Held until serve returns: a second daemon on this dir would empty our spool/.tmp.
    let _lock = crate::fsutil::lock_dir(&dir).map_err(anyhow::Error::msg)?;
    let store = Arc::new(Store::open(&Store::path_in(&dir))?);
    let spool = Arc::new(
        Spool::open(&dir).with_context(|| format!("cannot open spool in {}", dir.display()))?,
    );
    let writer = store.instance_writer()?;
    let active = ActiveStudies::default();
    let (journal, mover) = open_journal(&settings.dicom, &spool, &store, &writer, &active).await?;
    recover(&spool, &store, settings.pipeline.max_attempts)?;
    let mut engine = Engine::load(
        settings.analysis.clone(),
        settings.selection.clone(),
        &settings.model,
    )
    .context("cannot load the X-ray model ([model] settings)")?;
    // Its own adaptation to the site, reading at once with the weights an earlier run
    // adapted from the configured ones.
    engine.adaptation = SiteAdaptation::configured(&settings.model, &engine.xray, &dir)?;
    if let Some(adaptation) = &engine.adaptation {
        adaptation.restore(&engine.xray);
        let adapted = adaptation.adapted(&engine.xray);
        crate::ops::metrics::metrics()
            .xray_site_adapted
            .set(f64::from(u8::from(adapted)));
    }
    let engine = Arc::new(engine);
    let addr = settings.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let tls_listener = match &settings.dicom.tls {
        tls if tls.enabled() => {
            let config = crate::dicom::tls::server_config(tls).context("[dicom.tls]")?;
            let listener = TcpListener::bind(tls.listen.as_str())
                .await
                .with_context(|| format!("cannot listen on {} ([dicom.tls] listen)", tls.listen))?;
            Some(Endpoint {
                listener,
                tls: Some(config),
            })
        }
        _ => None,
    };
    let http_listener = http::bind(&settings.http).await?;
    let http_addr = http_listener
        .local_addr()
        .context("cannot read the HTTP listener's address")?;
    let health = Health::default();
    let ingest = Arc::new(Ingest {
        callers: settings.caller_rules()?,
        settings: settings.dicom.clone(),
        spool,
        writer,
        journal,
        mover,
        active: active.clone(),
        storage_dir: dir.clone(),
        health: health.clone(),
    });
    let (routes_tx, routes) = watch::channel(Arc::new(routes_of(&settings)));
    let (pipeline_tx, pipeline) = watch::channel(Arc::new(settings.pipeline.clone()));
    let (wake_workers, wake_delivery) = (Wake::default(), Wake::default());

    let trigger = ShutdownTrigger::new();
    let mut supervisor = Supervisor::new();
    let writer = ingest.writer.clone();
    supervisor.watch("database writer", trigger.subscribe(), move || {
        writer.is_alive()
    });
    let moving = ingest.clone();
    supervisor.watch("journal mover", trigger.subscribe(), move || {
        moving.mover.as_ref().is_none_or(|m| m.is_alive())
    });
    let app = http_app(&settings, &ingest, &store, &health, &engine);
    supervisor.spawn(
        "HTTP listener",
        trigger.subscribe(),
        http::run(
            http_listener,
            app,
            Duration::from_secs(settings.http.timeout_seconds),
            trigger.subscribe(),
            trigger.done_guard(),
        ),
    );
    let slots = Slots::new(
        settings.dicom.max_associations,
        settings.dicom.max_associations_per_peer,
    );
    let tls_addr = tls_listener
        .as_ref()
        .and_then(|e| e.listener.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    if let Some(endpoint) = tls_listener {
        supervisor.spawn(
            "DICOM TLS listener",
            trigger.subscribe(),
            listener::run(
                endpoint,
                ingest.clone(),
                slots.clone(),
                trigger.subscribe(),
                trigger.done_guard(),
            ),
        );
    }
    let plain = Endpoint {
        listener,
        tls: None,
    };
    supervisor.spawn(
        "DICOM listener",
        trigger.subscribe(),
        listener::run(
            plain,
            ingest,
            slots,
            trigger.subscribe(),
            trigger.done_guard(),
        ),
    );
    supervisor.spawn(
        "assembler",
        trigger.subscribe(),
        assembler::run(
            store.clone(),
            active,
            Duration::from_secs(settings.dicom.study_stable_seconds),
            pipeline,
            wake_workers.clone(),
            trigger.subscribe(),
            trigger.done_guard(),
        ),
    );
    let workers = Arc::new(Workers {
        store: store.clone(),
        engine,
        output: settings.output.clone(),
        outbox: dir.join("outbox"),
        settings: settings.pipeline.clone(),
        router: routes.clone(),
        wake: wake_workers,
        wake_delivery: wake_delivery.clone(),
        health: health.clone(),
    });
    let worker_count = settings.pipeline.worker_count();
    let pool = workers.run(worker_count, trigger.subscribe(), trigger.done_guard());
    if worker_count > 0 {
        supervisor.spawn("workers", trigger.subscribe(), pool);
    } else {
        // Paused: no worker runs, and the empty pool ends at once by design.
        tokio::spawn(pool);
    }
    let deliverer = Arc::new(Deliverer {
        store: store.clone(),
        settings: settings.delivery.clone(),
        our_ae: settings.dicom.ae_title.clone(),
        max_pdu_length: settings.dicom.max_pdu_length,
        wake: wake_delivery,
        health: health.clone(),
    });
    supervisor.spawn(
        "deliveries",
        trigger.subscribe(),
        deliverer.run(routes, trigger.subscribe(), trigger.done_guard()),
    );
    if settings.storage.retention_days > 0.0 {
        tokio::spawn(crate::ops::retention::run(
            store.clone(),
            dir.join("outbox"),
            settings.storage.retention_days,
            trigger.subscribe(),
            trigger.done_guard(),
        ));
    }
    tokio::spawn(systemd::watchdog(
        store.clone(),
        health.clone(),
        trigger.subscribe(),
    ));

    tracing::info!(
        ae_title = %settings.dicom.ae_title,
        listen = %addr,
        tls = %tls_addr,
        http = %http_addr,
        storage = %std::path::absolute(&dir).unwrap_or(dir.clone()).display(),
        workers = worker_count,
        callers = %callers_line(&settings),
        version = env!("CARGO_PKG_VERSION"),
        "osteoscreen ready"
    );
    systemd::ready();

    let reloadable = Reloadable {
        config_file,
        routes: routes_tx,
        pipeline: pipeline_tx,
    };
    let death = tokio::select! {
        stop = wait_for_stop(&reloadable) => {
            stop?;
            None
        }
        death = supervisor.death() => Some(death),
    };
    match &death {
        None => {
            tracing::info!("shutdown requested: finishing in-flight stores, studies and deliveries")
        }
        Some(what) => tracing::error!(
            part = %what,
            "a core part of the daemon stopped: shutting down to be restarted"
        ),
    }
    systemd::stopping();
    trigger.trigger();
    trigger.wait().await;
    if let Some(what) = death {
        anyhow::bail!("{what}; exiting so that the service manager restarts the daemon");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Who may send, as the ready line says it: plainly "any" when nothing restricts it.
fn callers_line(settings: &Settings) -> String {
    match settings.dicom.allowed_callers.len() {
        0 => "any (allowed_callers is empty: every caller that can reach the port)".into(),
        n => format!("{n} allowed_callers rules"),
    }
}

/// The HTTP listener's routes: STOW-RS in, health and metrics out.
fn http_app(
    settings: &Settings,
    ingest: &Arc<Ingest>,
    store: &Arc<Store>,
    health: &Health,
    engine: &Engine,
) -> axum::Router {
    let room = ingest.clone();
    let ops = http::Ops {
        store: store.clone(),
        writer: ingest.writer.clone(),
        spool_room: Box::new(move || room.has_room_for(0)),
        storage_dir: ingest.storage_dir.clone(),
        health: health.clone(),
        model_configured: !settings.model.weights.as_os_str().is_empty(),
        model_loaded: engine.xray.is_some(),
        last_ready: Default::default(),
    };
    let stow = StowService {
        ingest: ingest.clone(),
        max_body_mb: settings.http.max_body_mb,
        bearer_token: settings.http.bearer_token.clone(),
        timeout: Duration::from_secs(settings.http.timeout_seconds),
        requests: Arc::new(tokio::sync::Semaphore::new(
            crate::ingest::stow::MAX_REQUESTS,
        )),
    };
    http::router(Arc::new(ops), crate::ingest::stow::routes(Arc::new(stow)))
}

/// Open the ingest journal (unless `journal_segment_mb` is 0), move what a stop or a crash
/// left in it into the spool and the database, and start its mover.
async fn open_journal(
    settings: &crate::ingest::settings::DicomSettings,
    spool: &Arc<Spool>,
    store: &Arc<Store>,
    writer: &crate::store::InstanceWriter,
    active: &ActiveStudies,
) -> anyhow::Result<(
    Option<crate::ingest::journal::Journal>,
    Option<crate::ingest::mover::Mover>,
)> {
    use crate::ingest::{journal::Journal, mover};
    if settings.journal_segment_mb == 0 {
        return Ok((None, None));
    }
    let dir = spool.root().join(".journal");
    let (journal, records) = Journal::open_with_floor(
        &dir,
        settings.journal_segment_mb.saturating_mul(1 << 20),
        settings.journal_spare_segments.max(1),
        settings.min_free_disk_mb.saturating_mul(1 << 20),
    )
    .with_context(|| format!("cannot open the ingest journal in {}", dir.display()))?;
    if !records.is_empty() {
        let (spool, store, writer) = (spool.clone(), store.clone(), writer.clone());
        let found = records.len();
        let (moved, skipped) =
            tokio::task::spawn_blocking(move || mover::replay(records, &spool, &store, &writer))
                .await
                .context("journal replay")?;
        tracing::info!(
            found,
            moved,
            already_in_place = skipped,
            "replayed the ingest journal"
        );
        if moved + skipped < found {
            tracing::error!(
                left = found - moved - skipped,
                "journal records could not be moved; they stay for the next start"
            );
        }
    }
    let mover = mover::Mover::start(spool.clone(), store.clone(), writer.clone(), active.clone())
        .context("cannot start the journal mover")?;
    Ok((Some(journal), Some(mover)))
}

/// Make the database match the spool and the jobs match what a crash interrupted.
fn recover(spool: &Spool, store: &Store, max_attempts: u32) -> anyhow::Result<()> {
    let recovery = crate::ingest::recover::reconcile(spool.root(), store)?;
    if recovery.recovered > 0 {
        tracing::warn!(
            instances = recovery.recovered,
            "recorded spool files the database had lost (power loss or database removed)"
        );
    }
    if recovery.stale > 0 {
        tracing::warn!(
            files = recovery.stale,
            "removed older copies of instances re-sent under another study or series"
        );
    }
    for path in &recovery.unreadable {
        tracing::error!(path = %path.display(), "unreadable file in the spool; left in place");
    }
    let (resumed, given_up) = store.resume_interrupted(i64::from(max_attempts))?;
    if resumed > 0 {
        tracing::warn!(
            jobs = resumed,
            "jobs interrupted by a crash or forced stop are queued again"
        );
    }
    if given_up > 0 {
        tracing::error!(
            jobs = given_up,
            max_attempts,
            "jobs interrupted on every attempt are dead (see queue show; queue retry re-runs them)"
        );
    }
    Ok(())
}

fn routes_of(settings: &Settings) -> Routes {
    Routes::new(
        &settings.destinations,
        &settings.peers,
        &settings.delivery,
        &settings.storage.dir,
    )
}

/// Wait for SIGTERM / SIGINT; reload on SIGHUP meanwhile.
async fn wait_for_stop(reloadable: &Reloadable) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => reload(reloadable),
        }
    }
}

/// Re-read the settings; apply destinations, priorities and the log level. Anything
/// else needs a restart; a file that does not validate changes nothing.
fn reload(r: &Reloadable) {
    let settings = match Settings::load(r.config_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: settings not reloaded");
            return;
        }
    };
    r.routes.send_replace(Arc::new(routes_of(&settings)));
    r.pipeline.send_replace(Arc::new(settings.pipeline.clone()));
    crate::ops::logging::set_level(&settings.log.level);
    tracing::info!(
        destinations = settings.destinations.len(),
        priorities = settings.pipeline.priorities.len(),
        level = %settings.log.level,
        "SIGHUP: destinations, priorities and log level reloaded"
    );
}
