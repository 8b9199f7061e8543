"""Rules reload: the diff, valid and invalid changes, ConfigMap symlink swaps, the polling loop."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from adapter.app.context import AppContext
from adapter.core.cache import Cached
from adapter.domain.models import QueryResult
from adapter.rules.loader import RuleSet, load_configured_rules, load_rules, load_rules_text
from adapter.serving.asgi import build_context
from adapter.serving.reload import RulesDiff, RulesWatcher, diff_rules
from adapter.settings import Settings
from sim.fake_backend import FakeBackend


def native(*metrics: tuple[str, str]) -> str:
    lines = ["metrics:"]
    for name, query in metrics:
        lines += [f"  - name: {name}", "    type: external", f"    query: {query}"]
    return "\n".join(lines) + "\n"


A = ("backlog_a", "sum(jetstream_prefill_backlog_size)")
B = ("slots_b", "sum(jetstream_slots_used_percentage)")
B2 = ("slots_b", "max(jetstream_slots_used_percentage)")
C = ("waiting_c", "sum(num_requests_waiting)")


def ctx_for(path: Path) -> AppContext:
    # Loaded the way serve loads it, which is also how the watcher reloads it by default.
    settings = Settings.from_options(config=str(path), presets=False, standalone=True)
    return build_context(settings, backend=FakeBackend(), rules=load_configured_rules(settings))


def file_rules(settings: Settings) -> RuleSet:
    """A loader of the file's own rules only (no presets or name families)."""
    return load_rules(settings.rules.config, presets=False)


def reloads(ctx: AppContext, result: str) -> float:
    value = ctx.telemetry.registry.get_sample_value(
        "llm_metrics_adapter_rule_reloads_total", {"result": result}
    )
    return value or 0.0


def error_of(watcher: RulesWatcher) -> str | None:
    # A function, not the attribute: mypy would keep an earlier narrowing across awaits.
    return watcher.status.error


def served(ctx: AppContext) -> set[str]:
    return set(ctx.registry.snapshot.external)


def test_diff_by_rule_id() -> None:
    old = load_rules_text(native(A, B), filename="r.yaml", presets=False).rules
    new = load_rules_text(native(A, B2, C), filename="r.yaml", presets=False).rules
    diff = diff_rules(old, new)
    # Native rule ids are positional: r.yaml#metrics[i].
    ids = [r.id for r in new]
    assert diff == RulesDiff(added=(ids[2],), changed=(ids[1],))
    assert diff.summary() == f"added [{ids[2]}]; changed [{ids[1]}]"
    assert diff_rules(new, old).removed == (ids[2],)
    assert not diff_rules(old, old) and diff_rules(old, old).summary() == "no rule changed"


async def test_valid_change_applies_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(native(A, B))
    ctx = ctx_for(path)
    watcher = RulesWatcher(ctx)
    assert await watcher.check() is None, "nothing changed yet"
    ctx.provider.cache._entries["x", "q"] = Cached(  # type: ignore[index]
        value=QueryResult(query="q", samples=()), fetched_at=0.0
    )
    old_rules = ctx.rules

    path.write_text(native(A, B2, C))
    with caplog.at_level(logging.INFO, logger="adapter.serving.reload"):
        diff = await watcher.check()
    assert diff is not None and diff.added and diff.changed and not diff.removed
    assert served(ctx) == {"backlog_a", "slots_b", "waiting_c"}
    assert ctx.rules is not old_rules
    assert len(ctx.rules.rules) == len(old_rules.rules) + 1
    assert ctx.registry.find_external("slots_b").rule.query.startswith("max(")  # type: ignore[union-attr]
    assert len(ctx.provider.cache) == 0, "fresh cache entries are dropped"
    assert reloads(ctx, "ok") == 1 and reloads(ctx, "error") == 0
    assert error_of(watcher) is None and watcher.status.last_diff == diff
    success = ctx.telemetry.registry.get_sample_value(
        "llm_metrics_adapter_rules_last_reload_success_timestamp_seconds"
    )
    assert success == watcher.status.last_reload
    assert any(diff.summary() in r.getMessage() for r in caplog.records)

    # A removal.
    path.write_text(native(A))
    diff = await watcher.check()
    assert diff is not None and len(diff.removed) == 2
    assert served(ctx) == {"backlog_a"}


async def test_invalid_change_keeps_the_last_good_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.yaml"
    good = native(A, B)
    path.write_text(good)
    ctx = ctx_for(path)
    watcher = RulesWatcher(ctx)
    rules_before = ctx.rules

    path.write_text(good + "  - name: broken\n    type: nonsense\n    query: up\n")
    with caplog.at_level(logging.WARNING, logger="adapter.serving.reload"):
        assert await watcher.check() is None
    assert ctx.rules is rules_before and served(ctx) == {"backlog_a", "slots_b"}
    assert "rules.yaml" in (error_of(watcher) or "")
    assert reloads(ctx, "error") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "serving the last good rules" in warnings[0].getMessage()

    # Polling the same broken file again reports nothing new.
    os.utime(path)
    assert await watcher.check() is None
    assert reloads(ctx, "error") == 1

    # Another broken content is a new failure.
    path.write_text("metrics: {not: a list}\n")
    await watcher.check()
    assert reloads(ctx, "error") == 2

    # Putting the serving content back clears the error without a reload.
    path.write_text(good)
    assert await watcher.check() is None
    assert error_of(watcher) is None and reloads(ctx, "ok") == 0


async def test_empty_or_missing_file_is_an_error_not_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(native(A))
    ctx = ctx_for(path)
    watcher = RulesWatcher(ctx, loader=file_rules)
    path.write_text("metrics: []\n")
    await watcher.check()
    assert "no rules" in (error_of(watcher) or "")
    path.write_text("metrics: [\n")
    await watcher.check()
    assert "rules.yaml" in (error_of(watcher) or "")
    path.unlink()
    await watcher.check()
    assert "cannot read" in (error_of(watcher) or "")
    assert served(ctx) == {"backlog_a"}
    path.write_text(native(A, C))
    diff = await watcher.check()
    assert diff is not None and error_of(watcher) is None
    assert served(ctx) == {"backlog_a", "waiting_c"}


async def test_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    # The kubelet's layout: rules.yaml -> ..data/rules.yaml, ..data -> ..<timestamp>/.
    mount = tmp_path / "mount"
    mount.mkdir()
    first = mount / "..2026_01_01_00_00_00.1"
    first.mkdir()
    (first / "rules.yaml").write_text(native(A, B))
    os.symlink(first.name, mount / "..data")
    os.symlink("..data/rules.yaml", mount / "rules.yaml")
    ctx = ctx_for(mount / "rules.yaml")
    watcher = RulesWatcher(ctx)

    second = mount / "..2026_01_01_00_01_00.2"
    second.mkdir()
    # Same size as before, and the same mtime: only the symlink target tells them apart.
    (second / "rules.yaml").write_text(native(A, C).replace("waiting_c", "slots_b"))
    st = (first / "rules.yaml").stat()
    os.utime(second / "rules.yaml", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.symlink(second.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")  # the atomic swap
    for leftover in first.iterdir():
        leftover.unlink()
    first.rmdir()

    diff = await watcher.check()
    assert diff is not None and diff.changed
    assert ctx.registry.find_external("slots_b").rule.query == C[1]  # type: ignore[union-attr]


async def test_touch_without_change_does_not_reload(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(native(A))
    ctx = ctx_for(path)
    watcher = RulesWatcher(ctx)
    os.utime(path, ns=(1, 1))
    assert await watcher.check() is None
    assert reloads(ctx, "ok") == 0 and error_of(watcher) is None


async def test_run_polls_until_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(native(A))
    ctx = ctx_for(path)
    watcher = RulesWatcher(ctx, interval=0.02)
    task = asyncio.create_task(watcher.run())
    try:
        path.write_text(native(A, C))
        for _ in range(250):  # at most ~5 s
            if "waiting_c" in served(ctx):
                break
            await asyncio.sleep(0.02)
        assert served(ctx) == {"backlog_a", "waiting_c"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_watching_needs_a_file() -> None:
    ctx = build_context(
        Settings.from_options(standalone=True),
        backend=FakeBackend(),
        rules=load_rules(None, presets=True),
    )
    with pytest.raises(ValueError, match="no rules file"):
        RulesWatcher(ctx)
