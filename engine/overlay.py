"""The config overlay: run-time changes made through the admin API (or the dashboard), kept in
``<data_dir>/overlay.yaml`` and merged over the config file at start-up, so they survive a restart.

Only a fixed set of settings is controllable (:data:`CONTROLS`): routing policy, quality target and rules,
cache mode, threshold, TTL and adaptive thresholds (their error bound), and each configured tenant's budget and allowed/denied models, and each
virtual key's budget. An overlay is written in the config file's own shape (``routing.policy``,
``cache.ttl_s``, ``tenants.<t>.budget``), except that key budgets are under ``keys.<key name>.budget``
(in the config they sit in a list). A change is merged into the running config and decoded with the
config's own msgspec Structs, so it is refused with the same message the config file would get; then it is
applied live (:meth:`engine.engine.Engine.reconfigure`), written to the overlay file (atomically) and
audited (``engine.audit``: one event per changed setting, old -> new).

    GET   /admin/controls   the controllable settings in force, the overlay, the choices
    PATCH /admin/controls   a partial overlay -> the settings in force ({"changed": [...]})
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

from engine.errors import ConfigError, RequestError

if TYPE_CHECKING:
    from engine.config import RawConfig
    from engine.engine import Engine

log = logging.getLogger("thrifty.overlay")
FILENAME = "overlay.yaml"
WATCH_S = 1.0  # how often a serving engine looks for another worker's change
# section -> its controllable fields. ``tenants`` and ``keys`` are keyed by name first.
CONTROLS: dict[str, tuple[str, ...]] = {
    "routing": ("policy", "quality_target", "rules"),
    "cache": ("mode", "threshold", "ttl_s", "adaptive"),  # adaptive: the error bound (cache.adaptive)
    "tenants": ("budget", "allow_models", "deny_models"),
    "keys": ("budget",),
}
_NAMED = ("tenants", "keys")


def overlay_path(raw: RawConfig) -> Path:
    """Where the overlay of a config lives: its data dir (``THRIFTY_DATA_DIR`` wins, as in resolve)."""
    return Path(os.environ.get("THRIFTY_DATA_DIR", raw.data_dir)).expanduser() / FILENAME


def check_shape(overlay: Any, where: str) -> dict[str, Any]:
    """The overlay as a dict, or a ConfigError naming the first key that is not controllable."""
    known = ", ".join(f"{s}.{'<name>.' if s in _NAMED else ''}{{{','.join(f)}}}" for s, f in CONTROLS.items())
    if not isinstance(overlay, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(overlay).__name__}")
    for section, body in overlay.items():
        if section not in CONTROLS:
            raise ConfigError(f"{where}: `{section}` is not a controllable setting; controllable: {known}")
        for name, fields in _entries(section, body, where):
            if not isinstance(fields, dict):
                raise ConfigError(f"{where}: {section}.{name}: expected a mapping, got {type(fields).__name__}")
            for field in fields:
                if field not in CONTROLS[section]:
                    path = f"{section}.{name}.{field}" if section in _NAMED else f"{section}.{field}"
                    raise ConfigError(f"{where}: `{path}` is not a controllable setting; controllable: {known}")
    return overlay


def _entries(section: str, body: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(name, fields) of a section: one unnamed entry for routing/cache, one per tenant or key."""
    if section not in _NAMED:
        yield "", body
        return
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: {section}: expected a mapping of names, got {type(body).__name__}")
    yield from body.items()


def merge(raw: RawConfig, overlay: dict[str, Any], where: str) -> RawConfig:
    """``raw`` with ``overlay`` over it, decoded (and so validated) as a whole config by RawConfig."""
    from engine.config import RawConfig, TenantConfig, VirtualKeyConfig

    data = msgspec.to_builtins(raw)
    for section, body in check_shape(overlay, where).items():
        for name, fields in _entries(section, body, where):
            target = _target(data, section, name, where)
            _deep_update(target, fields)
            if name:  # decoded alone first: msgspec would call a tenant `$.tenants[...]`, not by its name
                try:
                    msgspec.convert(target, TenantConfig if section == "tenants" else VirtualKeyConfig)
                except msgspec.ValidationError as exc:
                    message = str(exc).replace("at `$", f"at `$.{section}.{name}")
                    raise ConfigError(f"{where}: {message}") from exc
    try:
        return msgspec.convert(data, RawConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _deep_update(dest: dict[str, Any], fields: dict[str, Any]) -> None:
    """Mappings merge key by key (``cache.adaptive: {delta: 0.05}`` keeps the other adaptive settings);
    anything else, lists and null included, replaces."""
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(dest.get(key), dict):
            _deep_update(dest[key], value)
        else:
            dest[key] = value


def _target(data: dict[str, Any], section: str, name: str, where: str) -> dict[str, Any]:
    """The dict in the config's builtins that a section entry's fields go into."""
    if section == "tenants":
        tenant = data.get("tenants", {}).get(name)
        if tenant is None:
            raise ConfigError(f"{where}: tenants.{name}: no such tenant in the config (tenants are created in "
                              f"the config file, with their keys)")
        return tenant  # type: ignore[no-any-return]
    if section == "keys":
        for tenant in data.get("tenants", {}).values():
            for key in tenant.get("keys", []):
                if key.get("name") == name:
                    return key  # type: ignore[no-any-return]
        raise ConfigError(f"{where}: keys.{name}: no virtual key of that name in the config")
    return data.setdefault(section, {})  # type: ignore[no-any-return]


def read(path: Path) -> dict[str, Any]:
    """The overlay file's content ({} when there is none); a ConfigError naming the file when unreadable."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return check_shape(data or {}, str(path))


def apply_file(raw: RawConfig) -> tuple[RawConfig, str | None]:
    """Start-up: ``raw`` with its data dir's overlay merged over it, and a note saying so (None: none)."""
    path = overlay_path(raw)
    overlay = read(path)
    if not overlay:
        return raw, None
    return merge(raw, overlay, str(path)), f"config overlay applied from {path} (changes made at run time)"


def current(raw: RawConfig) -> dict[str, Any]:
    """The controllable settings in force, in the overlay's shape."""
    data = msgspec.to_builtins(raw)
    out: dict[str, Any] = {s: {f: data.get(s, {}).get(f) for f in CONTROLS[s]} for s in ("routing", "cache")}
    out["routing"]["rules"] = out["routing"]["rules"] or []
    out["tenants"] = {t: {f: cfg.get(f, [] if f != "budget" else None) for f in CONTROLS["tenants"]}
                      for t, cfg in data.get("tenants", {}).items()}
    out["keys"] = {k["name"]: {"budget": k.get("budget"), "tenant": t}
                   for t, cfg in data.get("tenants", {}).items() for k in cfg.get("keys", [])}
    return out


def _leaves(overlay: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Any]]:
    """(path, section, name, field, value) flattened: one per controllable setting the overlay sets."""
    for section, body in overlay.items():
        for name, fields in _entries(section, body, "overlay"):
            for field, value in fields.items():
                path = f"{section}.{name}.{field}" if name else f"{section}.{field}"
                yield path, section, name, field, value


def _get(view: dict[str, Any], section: str, name: str, field: str) -> Any:
    body = view.get(section, {})
    if name:
        body = body.get(name, {})
    return body.get(field)


class Overlay:
    """The run-time controls of one Engine: apply a change live, persist it, audit it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # one change at a time: read-modify-write of the file
        self._seen = self._signature()  # the file as config.load merged it

    def _signature(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def refresh(self) -> bool:
        """Apply the overlay file if it changed since this engine last saw it: a change another worker
        process of the same data dir made. True when the running config changed."""
        from engine.config import resolve

        sig = self._signature()
        if sig == self._seen or sig is None:
            return False
        with self._lock:
            self._seen = sig
            settings = self.engine.settings
            raw = merge(settings.raw, read(self.path), str(self.path))
            if raw == settings.raw:
                return False
            self.engine.reconfigure(resolve(raw, settings.source))
        return True

    async def watch(self, interval_s: float = WATCH_S) -> None:
        """Run by a serving engine: picks up the other workers' changes within ``interval_s`` (a stat per
        interval; the reload itself runs off the event loop) and, with ``state``, the other replicas' (one
        Redis GET per interval, ``engine.state.controls``) and their experiment changes (one HGETALL,
        ``engine.state.experiments``). A file or shared document that no longer merges is logged and the
        running config kept."""
        while True:
            await asyncio.sleep(interval_s)
            if self._shared() is not None:
                try:
                    if await asyncio.to_thread(self.adopt_shared):
                        log.warning("config overlay changed on another replica: applied, and written to %s",
                                    self.path)
                except Exception as exc:  # whatever another replica wrote, this loop goes on
                    log.error("the replicas' shared overlay was not applied: %s", exc)
            experiments = getattr(self.engine, "experiments", None)
            if experiments is not None and experiments.shared is not None:
                try:  # experiments' promotions, stops and weights are run-time controls too
                    await asyncio.to_thread(experiments.adopt_shared)
                except Exception as exc:
                    log.error("the replicas' experiment state was not taken: %s", exc)
            if self._signature() == self._seen:
                continue
            try:
                if await asyncio.to_thread(self.refresh):
                    log.warning("config overlay changed by another worker: applied %s", self.path)
            except (ConfigError, RequestError) as exc:
                log.error("config overlay %s not applied: %s", self.path, exc)

    @property
    def path(self) -> Path:
        return self.engine.settings.data_dir / FILENAME

    def state(self) -> dict[str, Any]:
        raw = self.engine.settings.raw
        return {"settings": current(raw), "overlay": read(self.path), "path": str(self.path),
                "choices": {"policy": _literal("Policy"), "cache_mode": _literal("CacheMode"),
                            "models": list(self.engine.catalog.ids)}}

    def apply(self, patch: Any, actor: str) -> dict[str, Any]:
        """Validate ``patch`` (a partial overlay), apply it live, persist and audit it. A RequestError
        naming the setting when it is wrong; nothing is changed then."""
        from engine.config import resolve

        try:
            check_shape(patch, "controls")
        except ConfigError as exc:
            raise RequestError(str(exc)) from exc
        with self._lock:
            settings = self.engine.settings
            try:
                raw = merge(settings.raw, patch, "controls")
                new_settings = resolve(raw, settings.source)
            except ConfigError as exc:
                raise RequestError(str(exc)) from exc
            before, after = current(settings.raw), current(raw)
            changed = [(p, _get(before, s, n, f), _get(after, s, n, f)) for p, s, n, f, _ in _leaves(patch)]
            changed = [c for c in changed if c[1] != c[2]]
            if not changed:
                return {"changed": [], "settings": after}
            try:
                self.engine.reconfigure(new_settings)
            except ConfigError as exc:  # e.g. a rule naming a model the router does not know
                raise RequestError(str(exc)) from exc
            self._persist(patch)
            self._seen = self._signature()
            for path, old, new in changed:
                self.engine.audit.record(actor, "config.set", path, old, new)
            shared = self._shared()
            if shared is not None and not shared.publish(patch, actor):
                log.warning("controls: Redis is down; the change applies here and reaches the other replicas "
                            "when it answers")
        return {"changed": [c[0] for c in changed], "settings": after}

    def _shared(self) -> Any:
        """The replicas' shared overlay (``engine.state.controls``), or None without ``state``."""
        state = getattr(self.engine, "state", None)
        shared = None if state is None else state.controls
        if shared is not None and shared.local is None:
            shared.local = lambda: read(self.path)  # a Redis that comes back empty is re-seeded from it
        return shared

    def adopt_shared(self) -> bool:
        """Apply the replicas' shared overlay if it changed since this engine last applied it: merged over
        this data dir's overlay file (and this replica's own changes still waiting for Redis over that),
        written there, applied live and audited here as made by its actor on its replica. True when the
        running config changed."""
        from engine.config import resolve

        shared = self._shared()
        got = shared.fetch() if shared is not None else None
        if got is None:
            return False
        document, doc, actor, origin = got
        with self._lock:
            try:  # a document this replica cannot apply is logged once, not retried every second
                check_shape(doc, "the shared overlay")
                local = read(self.path)
                overlay = merge_patch(copy.deepcopy(local), doc)
                for patch in shared.pending:
                    merge_patch(overlay, patch)
                settings = self.engine.settings
                raw = merge(settings.raw, overlay, "the shared overlay")
                changed = raw != settings.raw
                if changed:
                    self.engine.reconfigure(resolve(raw, settings.source))
                if overlay != local:
                    # The first worker of this data dir to see it writes the file and audits the change
                    # (the others of the data dir apply it and find the file written).
                    self._write(overlay)
                    before, after = current(settings.raw), current(raw)
                    by = actor if origin == shared.replica else f"{actor} (replica {origin})"
                    for path, s, n, f, _ in _leaves(overlay):
                        old, new = _get(before, s, n, f), _get(after, s, n, f)
                        if old != new:
                            self.engine.audit.record(by, "config.set", path, old, new)
                self._seen = self._signature()
            finally:
                shared.applied(document)
        return changed

    def _persist(self, patch: dict[str, Any]) -> None:
        self._write(merge_patch(read(self.path), patch))

    def _write(self, overlay: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".yaml.tmp")
        text = "# thrifty config overlay: changes made at run time (admin API / dashboard), merged over the\n" \
               "# config file at start-up. Edit with care; every change made through the API is audited.\n"
        tmp.write_text(text + yaml.safe_dump(overlay, sort_keys=True), encoding="utf-8")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def merge_patch(overlay: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` (a checked partial overlay) merged into ``overlay`` in place, key by key; returns it."""
    for section, body in patch.items():
        dest = overlay.setdefault(section, {})
        for name, fields in _entries(section, body, "controls"):
            _deep_update(dest.setdefault(name, {}) if name else dest, msgspec.to_builtins(fields))
    return overlay


def _literal(name: str) -> list[str]:
    """The values of one of router.types' Literal aliases (``Policy``, ``CacheMode``)."""
    from typing import get_args

    import router.types

    return list(get_args(getattr(router.types, name)))
