"""The model registry: one interface, two homes.

- :class:`LakeRegistry` (here): a folder in the lake, local or Blob Storage::

      models/<name>/<version>/card.json        the model card (versions 1, 2, 3...)
      models/<name>/<version>/<model files>
      models/<name>/production.json            the production pointer: which version serves
      models/<name>/decisions/<time>-v<version>-<id>.json   every decision, one file each, never rewritten
      models/<name>/archive/<version>/           an archived version: its card and files, moved

- ``AzureRegistry`` (:mod:`shared.mlops.aml_registry`): Azure ML's model registry through
  azure-ai-ml, the card's facts as the model version's tags.

In the lake, a registration claims its version by creating ``card.json`` (create-if-absent:
of two writers racing for a version, one gets it and the other takes the next), then writes
the model files; a version whose files are missing is never promoted. The pointer is written
whole (atomic replace) and is the truth about production: the cards' stages follow it. Two
promotions of the same model at once are not arbitrated (the loop reviews one model at a time).

The production model changes only through :meth:`Registry.promote`; :func:`review` applies the
promotion rules (:mod:`shared.mlops.promotion`) to a registered candidate and records the
decision either way.

The registry stays small: :meth:`Registry.prune` keeps a model's last N versions and every version
that was ever in production, and archives the others (out of :meth:`Registry.versions`; their
files are kept). Listing the production models reads a pointer and a card per model, however
many versions each has had.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping

from pydantic import ValidationError

from shared.aml.catalog import Gates
from shared.lake import Lake, NotFoundError
from shared.mlops.cards import NAME_PATTERN, Decision, ModelCard
from shared.mlops.promotion import decide

__all__ = [
    "LakeRegistry",
    "ModelNotFound",
    "Registry",
    "RegistryError",
    "MLMODEL",
    "ever_in_production",
    "is_mlflow",
    "readable_production",
    "review",
]

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """The registry refused or could not do what was asked."""


class ModelNotFound(RegistryError):
    """No such model version."""


_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the file at the top of an MLflow model: a version holding it is an MLflow model (the version's
#: folder is the model's, ``mlflow.pyfunc.load_model`` loads it as it is)
MLMODEL = "MLmodel"
#: the folders of a version, below which file names may go (an MLflow model's artifacts and code)
_FOLDERS = 4


def check_files(files: Mapping[str, bytes]) -> list[str]:
    """The file names, sorted, if each is a relative path of plain names (``MLmodel``,
    ``artifacts/model/model.pkl``: at most a few folders deep, no ``..``, nothing hidden) and not
    the card's own ``card.json`` at the top (a file of that name in a folder is the model's)."""
    for name in files:
        parts = name.split("/")
        plain = all(_FILE_NAME.match(part) for part in parts)
        if not plain or len(parts) > _FOLDERS + 1 or name == "card.json":
            raise RegistryError(
                f"{name!r} is not a model file name (a relative path of names of letters, digits, '_', '-', '.'; "
                "not card.json)"
            )
    return sorted(files)


def is_mlflow(files: list[str]) -> bool:
    """Whether a version of these files is an MLflow model (its ``MLmodel`` at the top)."""
    return MLMODEL in files


def check_decision(version: int, decision: Decision, outcome: str) -> None:
    """Refuse a decision recorded against the wrong version or with the wrong outcome."""
    if decision.outcome != outcome or decision.candidate_version != version:
        raise RegistryError(
            f"decision {decision.outcome} for version {decision.candidate_version} "
            f"does not fit a {outcome} of version {version}"
        )


def as_candidate(card: ModelCard, version: int, files: list[str]) -> ModelCard:
    """``card`` as a new registry version: a candidate with no decision yet."""
    return card.model_copy(update={"version": version, "stage": "candidate", "decision": None, "files": files})


def ever_in_production(card: ModelCard) -> bool:
    """Whether ``card`` serves or has served (a retired version was production once)."""
    return card.stage in ("production", "retired")


class Registry(ABC):
    """What the MLOps loop needs of a model registry."""

    @abstractmethod
    def register(self, card: ModelCard, files: Mapping[str, bytes]) -> ModelCard:
        """Store a new version of ``card.name`` with its files, as a candidate; the card with
        its version (the next free one: two concurrent registrations never share a version)."""

    @abstractmethod
    def get(self, name: str, version: int) -> ModelCard:
        """One version's card; raises :class:`ModelNotFound`."""

    @abstractmethod
    def read_file(self, name: str, version: int, file_name: str) -> bytes:
        """One of a version's model files; raises :class:`ModelNotFound`."""

    @abstractmethod
    def versions(self, name: str) -> list[ModelCard]:
        """Every version of ``name``, oldest first (empty for an unknown name)."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every model name the registry holds, sorted."""

    def strays(self) -> list[str]:
        """What the registry's home holds beside its models (a stray file, a folder with no
        version), sorted: named, never planned. None in a registry that holds only models."""
        return []

    @abstractmethod
    def production(self, name: str) -> ModelCard | None:
        """The version of ``name`` in production, if any."""

    @abstractmethod
    def promote(self, name: str, version: int, decision: Decision) -> ModelCard:
        """Put ``version`` in production (the previous production version is retired) and
        record ``decision``; the promoted card."""

    @abstractmethod
    def keep(self, name: str, version: int, decision: Decision) -> ModelCard:
        """Record that ``version`` was not promoted, and why; it stays a candidate."""

    @abstractmethod
    def decisions(self, name: str) -> list[Decision]:
        """Every decision recorded for ``name``, oldest first."""

    @abstractmethod
    def archive(self, name: str, version: int) -> None:
        """Take ``version`` out of :meth:`versions` and :meth:`names`' history, its facts and files
        kept where they can be restored; nothing for a version already archived."""

    def prune(self, name: str, keep: int) -> list[int]:
        """Archive every version of ``name`` but its last ``keep`` and those ever in production
        (and the production one); the versions archived, oldest first. Run again, it archives
        nothing more."""
        if keep < 1:
            raise ValueError(f"keep at least one version, not {keep}")
        cards = self.versions(name)
        production = readable_production(self, name)
        kept = {c.version for c in cards[-keep:]} | {c.version for c in cards if ever_in_production(c)}
        if production is not None:
            kept.add(production.version)
        gone = [int(c.version or 0) for c in cards if c.version not in kept]
        for version in gone:
            self.archive(name, version)
        if gone:
            log.info("registry: %s: archived %d version(s), %d kept", name, len(gone), len(cards) - len(gone))
        return gone

    def restore_files(self, card: ModelCard, files: Mapping[str, bytes]) -> list[str]:
        """Write the files of a registered version that are missing (a registration that died
        between claiming its version and writing its files); the names written. A registry
        that writes its files before it registers a version has nothing to restore."""
        return []

    def production_models(self) -> list[ModelCard]:
        """Every model's production version, by name: models with none, a name that is not a
        model's (a stray folder) and a production record that does not read are left out (logged;
        the group falls back), never the others."""
        found = []
        for name in self.names():
            if not re.match(NAME_PATTERN, name):
                log.warning("registry: %r is not a model name: ignored", name)
                continue
            card = readable_production(self, name)
            if card is not None:
                found.append(card)
        return found


def readable_production(registry: Registry, name: str) -> ModelCard | None:
    """``name``'s production version; None (logged) when there is none or its pointer or card does
    not read (a corrupt record: a new promotion writes the pointer whole again)."""
    try:
        return registry.production(name)
    except RegistryError as e:
        log.warning("registry: %s", e)
        return None


def one_line(e: ValidationError) -> str:
    """A validation error in one line: its first problem and how many there are."""
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": str(e)}
    where = ".".join(str(x) for x in first.get("loc", ())) or "the record"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg')}{more}"


def review(
    registry: Registry,
    name: str,
    version: int,
    gates: Gates,
    now: dt.datetime,
    max_mape_increase: float | None = None,
    stale_days: float | None = None,
) -> Decision:
    """Apply the promotion rules to a registered candidate, then promote it or record that
    production stays; the decision either way (the margin and the staleness limit are the health
    policy's unless given)."""
    candidate = registry.get(name, version)
    production = readable_production(registry, name)
    decision = decide(candidate, production, gates, now, max_mape_increase, stale_days)
    if decision.outcome == "promoted":
        registry.promote(name, version, decision)
    else:
        registry.keep(name, version, decision)
    return decision


class LakeRegistry(Registry):
    """The registry in a lake folder (``models/`` by default: a container in Blob Storage)."""

    def __init__(self, lake: Lake, top: str = "models") -> None:
        self.lake = lake
        self.top = top.strip("/")

    # paths ------------------------------------------------------------------------------------
    def _card_path(self, name: str, version: int) -> str:
        return f"{self.top}/{name}/{version}/card.json"

    def _pointer_path(self, name: str) -> str:
        return f"{self.top}/{name}/production.json"

    def _version_numbers(self, name: str) -> list[int]:
        pattern = re.compile(rf"^{re.escape(self.top)}/{re.escape(name)}/([1-9][0-9]*)/card\.json$")
        return sorted(int(m.group(1)) for p in self.lake.list(f"{self.top}/{name}") if (m := pattern.match(p)))

    # the interface -----------------------------------------------------------------------------
    def register(self, card: ModelCard, files: Mapping[str, bytes]) -> ModelCard:
        names = check_files(files)
        version = max(self._version_numbers(card.name), default=0) + 1
        while True:
            claimed = as_candidate(card, version, names)
            # create-if-absent is the version's lock: of two writers, one gets it, the other tries the next
            if self.lake.create(self._card_path(card.name, version), claimed.to_json()):
                break
            version += 1
        for file_name in names:
            self.lake.write_bytes(f"{self.top}/{card.name}/{version}/{file_name}", files[file_name])
        return claimed

    def restore_files(self, card: ModelCard, files: Mapping[str, bytes]) -> list[str]:
        version = int(card.version or 0)
        missing = [
            f for f in card.files if f in files and not self.lake.exists(f"{self.top}/{card.name}/{version}/{f}")
        ]
        for file_name in missing:
            self.lake.write_bytes(f"{self.top}/{card.name}/{version}/{file_name}", files[file_name])
        return missing

    def get(self, name: str, version: int) -> ModelCard:
        try:
            data = self.lake.read_bytes(self._card_path(name, version))
        except NotFoundError:
            raise ModelNotFound(f"no version {version} of model {name}") from None
        try:
            return ModelCard.from_json(data)
        except ValidationError as e:
            raise RegistryError(f"the card of {name} version {version} is not valid: {one_line(e)}") from e

    def read_file(self, name: str, version: int, file_name: str) -> bytes:
        if file_name not in self.get(name, version).files:
            raise ModelNotFound(f"version {version} of model {name} has no file {file_name!r}")
        return self.lake.read_bytes(f"{self.top}/{name}/{version}/{file_name}")

    def versions(self, name: str) -> list[ModelCard]:
        """Every version whose card reads; a corrupt card is left out (logged), never the others."""
        found = []
        for v in self._version_numbers(name):
            try:
                found.append(self.get(name, v))
            except ModelNotFound:
                continue
            except RegistryError as e:
                log.warning("registry: %s: left out", e)
        return found

    def names(self) -> list[str]:
        """The group names one level below the top with a production pointer or a version folder:
        one listing of names, then per name a pointer's existence or one listing of its folder,
        never of every version's files."""
        return self._entries()[0]

    def strays(self) -> list[str]:
        """The entries one level below the top that are not a model (see :meth:`names`)."""
        return self._entries()[1]

    def production(self, name: str) -> ModelCard | None:
        path = self._pointer_path(name)
        try:
            data = self.lake.read_bytes(path)
        except NotFoundError:
            return None
        try:
            pointer = json.loads(data)
        except ValueError as e:
            raise RegistryError(f"the production pointer {path} is not JSON ({e})") from None
        version = pointer.get("version") if isinstance(pointer, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RegistryError(f"the production pointer {path} names no version (a positive integer): {version!r}")
        return self.get(name, version)

    def promote(self, name: str, version: int, decision: Decision) -> ModelCard:
        check_decision(version, decision, "promoted")
        card = self.get(name, version)
        # the card claims its version before the files are written: a registration that died
        # in between leaves a card whose files are missing, and such a version never serves
        missing = [f for f in card.files if not self.lake.exists(f"{self.top}/{name}/{version}/{f}")]
        if missing:
            raise RegistryError(f"{name} version {version} is incomplete (missing {', '.join(missing)}): not promoted")
        previous = readable_production(self, name)  # a corrupt pointer is replaced by this promotion
        self._record(name, decision)
        promoted = card.model_copy(update={"stage": "production", "decision": decision})
        self.lake.write_bytes(self._card_path(name, version), promoted.to_json())
        # the pointer is the truth: once it moves the new version serves, whatever a crash leaves behind
        pointer = {"name": name, "version": version, "promoted_at": decision.decided_at, "reason": decision.reason}
        self.lake.write_bytes(self._pointer_path(name), json.dumps(pointer, indent=2).encode("utf-8"))
        if previous is not None and previous.version != version:
            retired = previous.model_copy(update={"stage": "retired"})
            self.lake.write_bytes(self._card_path(name, int(previous.version or 0)), retired.to_json())
        return promoted

    def keep(self, name: str, version: int, decision: Decision) -> ModelCard:
        check_decision(version, decision, "kept")
        card = self.get(name, version)
        self._record(name, decision)
        kept = card.model_copy(update={"decision": decision})
        self.lake.write_bytes(self._card_path(name, version), kept.to_json())
        return kept

    def archive(self, name: str, version: int) -> None:
        """Move the version's folder to ``<name>/archive/<version>/``: its files first, its card
        last (a move that died half-way is finished by the next one)."""
        try:
            card = self.get(name, version)
        except ModelNotFound:
            return
        src, dst = f"{self.top}/{name}/{version}", f"{self.top}/{name}/archive/{version}"
        for file_name in card.files:
            try:
                data = self.lake.read_bytes(f"{src}/{file_name}")
            except NotFoundError:
                continue  # moved already, or it never arrived
            self.lake.write_bytes(f"{dst}/{file_name}", data)
            self.lake.delete(f"{src}/{file_name}")
        self.lake.write_bytes(f"{dst}/card.json", card.to_json())
        self.lake.delete(f"{src}/card.json")

    def decisions(self, name: str) -> list[Decision]:
        prefix = f"{self.top}/{name}/decisions"
        found = [Decision.model_validate_json(self.lake.read_bytes(p)) for p in self.lake.list(prefix)]
        return sorted(found, key=lambda d: (d.decided_at, d.candidate_version))

    # helpers ------------------------------------------------------------------------------------
    def _entries(self) -> tuple[list[str], list[str]]:
        names: list[str] = []
        strays: list[str] = []
        for entry in self.lake.children(self.top):
            held = re.match(NAME_PATTERN, entry) and (
                self.lake.exists(self._pointer_path(entry))
                or any(c.isdigit() for c in self.lake.children(f"{self.top}/{entry}"))
            )
            (names if held else strays).append(entry)
        return names, strays

    def _record(self, name: str, decision: Decision) -> None:
        stamp = re.sub(r"[^0-9TZ]", "", decision.decided_at)
        path = f"{self.top}/{name}/decisions/{stamp}-v{decision.candidate_version}-{uuid.uuid4().hex[:8]}.json"
        self.lake.create(path, decision.model_dump_json(indent=2).encode("utf-8"))
