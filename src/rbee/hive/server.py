"""`rbee-hive`: serve the hive API on this machine."""

from __future__ import annotations

import logging
import os
import sys

import httpx

from rbee.core.private import private_dir, private_umask
from rbee.hive.devices import SystemProbe
from rbee.hive.launcher import SubprocessLauncher
from rbee.hive.probe_guard import first_devices
from rbee.hive.services import HiveServices, preload
from rbee.hive.settings import HiveSettings
from rbee.hive.supervisor import Supervisor, SupervisorConfig
from rbee.hive.telemetry import TelemetryReporter
from rbee.remote.hives_conf import parse_labels
from rbee.tracing.daemon import endpoint_or_exit, tracing_for
from rbee.web.auth import refuse_open_listener
from rbee.web.listener import load_settings


def build_services(settings: HiveSettings) -> HiveServices:
    # Secrets come through the environment, never argv (argv is world-readable in ps).
    token = settings.token or os.environ.get("RBEE_HIVE_TOKEN") or None
    worker_token = os.environ.get("RBEE_HIVE_WORKER_TOKEN") or None
    advertise = settings.advertise_host or settings.host
    probe = SystemProbe()
    devices = first_devices(probe)  # bounded: a wedged driver must not stop the start-up
    http = httpx.AsyncClient(timeout=10.0)
    supervisor = Supervisor(
        SupervisorConfig(hive_id=settings.hive_id, bind_host=settings.host,
                         advertise_host=advertise, home=settings.home,
                         hf_endpoint=settings.hf_endpoint or os.environ.get("HF_ENDPOINT"),
                         worker_token=worker_token, default_threads=settings.worker_threads,
                         stop_grace=settings.stop_grace),
        SubprocessLauncher(), {d.id for d in devices})
    reporter = None
    if settings.queen_url:
        reporter = TelemetryReporter(
            hive_id=settings.hive_id, url=f"http://{advertise}:{settings.port}",
            queen_url=settings.queen_url, token=token, probe=probe, supervisor=supervisor,
            http=http, interval=settings.telemetry_interval, region=settings.region,
            labels=parse_labels(settings.labels))
    return HiveServices(hive_id=settings.hive_id, probe=probe, supervisor=supervisor, http=http,
                        first_devices=devices, stall_limit=settings.stall_limit,
                        reporter=reporter, token=token, preload_model=settings.preload_model,
                        preload_threads=settings.worker_threads)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(HiveSettings, sys.argv[1:] if argv is None else argv, "rbee-hive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s hive %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Worker logs hold prompts and answers, the model cache what users run: owner-only,
    # also for what workers create (they inherit the umask); an older home is tightened.
    private_umask()
    private_dir(settings.home, tighten_tree=True)
    traces = endpoint_or_exit("rbee-hive", os.environ)  # the queen's, for its local hive
    services = build_services(settings)
    refuse_open_listener(settings.host, services.token, "rbee-hive")
    # Workers listen on the hive's address: there, they need a token of their own too.
    refuse_open_listener(settings.host, services.supervisor.config.worker_token,
                         "rbee-hive (for its workers: set RBEE_HIVE_WORKER_TOKEN)")
    if services.preload_model and not services.preload_model.startswith("hf:"):
        preload(services)  # before the web stack's imports: the worker starts meanwhile
    from rbee.hive.app import create_app
    from rbee.web.serve import serve

    tracing = tracing_for("rbee-hive", traces, instance=settings.hive_id)
    serve(create_app(services, tracing), host=settings.host, port=settings.port,
          parent_pid=settings.parent_pid, limits=settings)
