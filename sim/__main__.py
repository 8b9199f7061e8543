"""Run the demo fleet: ``python -m sim [--duration S] [--no-prometheus] [--cluster C]``."""

from __future__ import annotations

import argparse

from sim.fleet import SimFleet, run_fleet
from sim.prometheus import LocalPrometheus

__all__ = ["main"]


def _started(fleet: SimFleet, prom: LocalPrometheus | None) -> None:
    for pod in fleet.pods:
        print(f"pod {pod.namespace}/{pod.name}: {pod.server.url}")
    print(f"tpu exporter: {fleet.tpu.url}")
    if prom is not None:
        print(f"prometheus: {prom.url}")
    print("press Ctrl-C to stop", flush=True)


def _tick(t: float, levels: dict[str, float]) -> None:
    shown = " ".join(f"{name}={level:.2f}" for name, level in levels.items())
    print(f"t={t:6.1f}s {shown}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    parser.add_argument("--cluster", default="demo")
    parser.add_argument("--no-prometheus", action="store_true", help="exporters only")
    args = parser.parse_args(argv)
    run_fleet(
        duration=args.duration,
        cluster=args.cluster,
        with_prometheus=not args.no_prometheus,
        on_start=_started,
        on_tick=_tick,
    )


if __name__ == "__main__":
    main()
