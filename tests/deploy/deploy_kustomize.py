"""A small, faithful kustomize renderer for the subset deploy/k8s uses.

``make test`` must build the overlays offline, and no kustomize binary can be installed from
the registries this project may use (PyPI, Debian, npm): ``kubectl kustomize`` is on some
machines but not installable by the project. This renderer implements exactly the fields the
manifests use; ``test_kustomize.py`` compares it object for object with
``kubectl kustomize`` (or ``kustomize build``) wherever one is on PATH, and any other field
in a kustomization.yaml is an error here, so the two cannot drift apart silently.

Supported: resources (files and directories), namespace, labels (pairs only: metadata
labels), images (newName/newTag/digest), replicas, patches (inline JSON 6902 with a target of
kind/name/group/version; the name is a regex like kustomize's), configMapGenerator (files,
literals) with generatorOptions (labels, annotations, disableNameSuffixHash) and the content
hash suffix kustomize gives generated ConfigMaps, with references to them rewritten.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

_KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "configMapGenerator",
    "generatorOptions",
}
_CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
}
_WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot build faithfully."""


@dataclass
class _Res:
    obj: Obj
    generated: bool = False
    hash_suffix: bool = False
    original_name: str = ""


@dataclass
class Build:
    objects: list[Obj] = field(default_factory=list)


def build(path: Path) -> list[Obj]:
    """Render the kustomization in ``path`` like ``kustomize build path``."""
    resources = _build_dir(path.resolve())
    renames: dict[str, str] = {}
    for res in resources:
        if res.generated and res.hash_suffix:
            old = res.obj["metadata"]["name"]
            new = f"{old}-{config_map_hash(res.obj)}"
            res.obj["metadata"]["name"] = new
            renames[old] = new
    for res in resources:
        if not res.generated:
            _rewrite_config_map_refs(res.obj, renames)
    return [res.obj for res in resources]


def _load_kustomization(path: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        file = path / name
        if file.is_file():
            data = yaml.safe_load(file.read_text()) or {}
            unknown = set(data) - _KNOWN_FIELDS
            if unknown:
                raise KustomizeError(f"{file}: fields this renderer does not support: {unknown}")
            return dict(data)
    raise KustomizeError(f"{path}: no kustomization.yaml")


def _build_dir(path: Path) -> list[_Res]:
    kust = _load_kustomization(path)
    out: list[_Res] = []
    for entry in kust.get("resources", []):
        target = (path / entry).resolve()
        if target.is_dir():
            out.extend(_build_dir(target))
        elif target.is_file():
            for doc in yaml.safe_load_all(target.read_text()):
                if doc:
                    out.append(_Res(doc))
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    out.extend(_generate(path, kust))
    _check_unique(out, path)
    for patch in kust.get("patches", []):
        _apply_patch(out, patch, path)
    if "namespace" in kust:
        for res in out:
            if res.obj["kind"] not in _CLUSTER_SCOPED:
                res.obj.setdefault("metadata", {})["namespace"] = kust["namespace"]
    for entry in kust.get("labels", []):
        if set(entry) - {"pairs"}:
            raise KustomizeError(f"{path}: labels support only 'pairs' (metadata labels)")
        for res in out:
            res.obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for entry in kust.get("replicas", []):
        for res in out:
            if res.obj["kind"] in _WORKLOADS and res.obj["metadata"]["name"] == entry["name"]:
                res.obj.setdefault("spec", {})["replicas"] = entry["count"]
    for entry in kust.get("images", []):
        for res in out:
            _set_images(res.obj, entry)
    return out


def _check_unique(resources: list[_Res], path: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for res in resources:
        meta = res.obj.get("metadata", {})
        key = (res.obj["kind"], meta.get("namespace", ""), meta["name"])
        if key in seen:
            raise KustomizeError(f"{path}: {key} appears twice")
        seen.add(key)


def _generate(path: Path, kust: Obj) -> list[_Res]:
    options = kust.get("generatorOptions", {})
    unknown = set(options) - {"labels", "annotations", "disableNameSuffixHash"}
    if unknown:
        raise KustomizeError(f"{path}: generatorOptions not supported: {unknown}")
    out = []
    for gen in kust.get("configMapGenerator", []):
        if set(gen) - {"name", "files", "literals"}:
            raise KustomizeError(f"{path}: configMapGenerator supports name, files, literals")
        data: dict[str, str] = {}
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        for file in gen.get("files", []):
            key, sep, rel = file.partition("=")
            if not sep:
                key, rel = Path(file).name, file
            source = (path / rel).resolve()
            if path not in source.parents:
                raise KustomizeError(f"{path}: {file} is outside the kustomization root")
            data[key] = source.read_text()
        meta: Obj = {"name": gen["name"]}
        if options.get("labels"):
            meta["labels"] = dict(options["labels"])
        if options.get("annotations"):
            meta["annotations"] = dict(options["annotations"])
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        out.append(
            _Res(
                obj,
                generated=True,
                hash_suffix=not options.get("disableNameSuffixHash", False),
                original_name=gen["name"],
            )
        )
    return out


def config_map_hash(obj: Obj) -> str:
    """kustomize's name suffix: sha256 of Go's json.Marshal of {data, kind, name}, encoded.

    kustomize v5 hashes the generated map with an empty name (checked against
    ``kubectl kustomize``: literal a=b gives x-4h2mbtbbt6), so the suffix depends on the data only.
    """
    doc: Obj = {"kind": "ConfigMap", "name": "", "data": obj.get("data", {})}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoder escapes these for HTML safety; kustomize hashes its output.
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def _rewrite_config_map_refs(node: Any, renames: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key in ("configMap", "configMapRef", "configMapKeyRef"):
            ref = node.get(key)
            if isinstance(ref, dict) and ref.get("name") in renames:
                ref["name"] = renames[ref["name"]]
        for value in node.values():
            _rewrite_config_map_refs(value, renames)
    elif isinstance(node, list):
        for item in node:
            _rewrite_config_map_refs(item, renames)


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {unknown}")
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {"kind": obj["kind"], "name": obj["metadata"]["name"], "group": group}
    checks["version"] = version
    return all(re.fullmatch(str(target[key]), checks[key]) for key in target)


def _apply_patch(resources: list[_Res], patch: Obj, path: Path) -> None:
    if set(patch) - {"target", "patch"} or "target" not in patch:
        raise KustomizeError(f"{path}: only inline JSON 6902 patches with a target are supported")
    ops = yaml.safe_load(patch["patch"])
    if not isinstance(ops, list):
        raise KustomizeError(f"{path}: patch is not a JSON 6902 operation list")
    matched = [res for res in resources if _matches(res.obj, patch["target"])]
    if not matched:
        raise KustomizeError(f"{path}: patch target {patch['target']} matches nothing")
    for res in matched:
        for op in ops:
            res.obj = json_patch(res.obj, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(obj: Obj, op: Obj) -> Obj:
    """One RFC 6902 operation (add, replace, remove); errors where kustomize errors."""
    result = copy.deepcopy(obj)
    *parents, last = _pointer(op["path"])
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            node[index] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del node[index]
        else:
            raise KustomizeError(f"JSON patch op not supported: {kind}")
        return result
    if kind == "add":
        node[last] = copy.deepcopy(op["value"])
    elif kind == "replace":
        if last not in node:
            raise KustomizeError(f"replace of a missing path {op['path']}")
        node[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if last not in node:
            raise KustomizeError(f"remove of a missing path {op['path']}")
        del node[last]
    else:
        raise KustomizeError(f"JSON patch op not supported: {kind}")
    return result


def split_image(image: str) -> tuple[str, str, str]:
    """``name[:tag][@digest]`` -> (name, tag, digest)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _set_images(node: Any, entry: Obj) -> None:
    if isinstance(node, dict):
        for key in ("containers", "initContainers"):
            for container in node.get(key) or []:
                if isinstance(container, dict) and "image" in container:
                    container["image"] = _new_image(container["image"], entry)
        for value in node.values():
            _set_images(value, entry)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, entry)


def _new_image(image: str, entry: Obj) -> str:
    name, tag, digest = split_image(image)
    if name != entry["name"]:
        return image
    name = entry.get("newName", name)
    if "digest" in entry:
        return f"{name}@{entry['digest']}"
    if "newTag" in entry:
        return f"{name}:{entry['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
