"""Validation: a generic walk over the schema's rules, then the few rules that join several keys.

Every error is one line, ``<source>: <dotted key> <what is wrong>``, where the source is the ``-o``
override that set the key (or a related key), else the file that set it, else the config as a whole.
"""
from __future__ import annotations

import math
import re

from taichi_syncnerf.config.schema import (FIELDS, GENERATE_ENCODINGS, GENERATE_FAMILIES, GENERATE_KEYS,
                                           NOT_APPLICABLE_BECAUSE, SECTIONS_OF_KIND, kind_of_section)
from taichi_syncnerf.errors import ConfigError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(x) -> str:
    return str(x)


def _int_phrase(lo, hi, plural: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"integers from {lo} to {hi}" if plural else f"an integer from {lo} to {hi}"
    if lo == 1:
        return "positive integers" if plural else "a positive integer"
    if lo is not None:
        return f"integers >= {lo}" if plural else f"an integer >= {lo}"
    return "integers" if plural else "an integer"


def _number_phrase(meta) -> str:
    lo, hi, gt, lt = meta["min"], meta["max"], meta["gt"], meta["lt"]
    if hi is None and lt is None:
        if lo == 0 and gt is None:
            return "a non-negative number"
        if gt == 0 and lo is None:
            return "a positive number"
        if lo is not None:
            return f"a number >= {_num(lo)}"
        if gt is not None:
            return f"a number > {_num(gt)}"
        return "a number"
    if lo is None and gt is None:
        return f"a number <= {_num(hi)}" if hi is not None else f"a number < {_num(lt)}"
    left = f"[{_num(lo)}" if lo is not None else f"({_num(gt)}"
    right = f"{_num(hi)}]" if hi is not None else f"{_num(lt)})"
    return f"a number in {left}, {right}"


def describe(meta) -> str:
    """What a value of this field must be, as the error messages and the reference page say it."""
    kind = meta["kind"]
    if kind == "int":
        text = _int_phrase(meta["min"], meta["max"])
    elif kind == "number":
        text = _number_phrase(meta)
    elif kind == "bool":
        text = "true or false"
    elif kind == "choice":
        text = "one of " + ", ".join(meta["choices"])
    elif kind == "int_list":
        count = f"{meta['length']} " if meta["length"] else ""
        text = f"a {'non-empty ' if meta['nonempty'] else ''}list of {count}{_int_phrase(meta['min'], None, True)}"
    elif kind == "bbox":
        text = "[[xmin, ymin, zmin], [xmax, ymax, zmax]] with each min < max"
    elif kind == "generate":
        return "a mapping of make-scene arguments or null"
    elif kind == "any":
        return meta["allowed"]
    else:
        raise ValueError(f"unknown field kind {kind!r}")
    if meta["also"]:
        text = " or ".join(f"'{a}'" for a in meta["also"]) + " or " + text
    if meta["nullable"]:
        text = "null or " + text
    return text


def check(meta, v) -> bool:
    """Whether ``v`` follows the field's rule."""
    if v is None:
        return meta["nullable"] or meta["kind"] in ("generate", "any")
    if meta["also"] and isinstance(v, str) and v in meta["also"]:
        return True
    kind = meta["kind"]
    if kind in ("int", "number"):
        if not (_is_int(v) if kind == "int" else _is_number(v)):
            return False
        lo, hi, gt, lt = meta["min"], meta["max"], meta["gt"], meta["lt"]
        return ((lo is None or v >= lo) and (hi is None or v <= hi) and (gt is None or v > gt)
                and (lt is None or v < lt))
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "choice":
        return isinstance(v, str) and v in meta["choices"]
    if kind == "int_list":
        lo = meta["min"]
        return (isinstance(v, list) and all(_is_int(x) and (lo is None or x >= lo) for x in v)
                and (len(v) > 0 or not meta["nonempty"]) and (meta["length"] is None or len(v) == meta["length"]))
    if kind == "bbox":
        return (isinstance(v, list) and len(v) == 2
                and all(isinstance(c, list) and len(c) == 3 and all(_is_number(x) for x in c) for c in v)
                and all(lo < hi for lo, hi in zip(*v)))
    if kind == "generate":
        return isinstance(v, dict)
    return True


def _get(cfg: dict, dotted: str):
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def source_of(explicit: dict[str, str], where: str, *keys: str) -> str:
    """The ``-o`` that set one of ``keys``, else the file that set one, else ``where``."""
    labels = [explicit[k] for k in keys if k in explicit]
    return next((s for s in labels if s.startswith("override '")), labels[0] if labels else where)


def check_applicable(cfg: dict, explicit: dict[str, str]) -> None:
    """Refuse a key set explicitly in a section that ``model.kind`` does not read."""
    kind = cfg["model"]["kind"]
    for key, src in explicit.items():
        owner = kind_of_section(key)
        if owner is not None and key.split(".", 1)[0] not in SECTIONS_OF_KIND.get(kind, ()):
            why = NOT_APPLICABLE_BECAUSE.get((key.split(".", 1)[0], kind))
            raise ConfigError(f"{src}: {key} does not apply to model.kind {kind}" + (f" ({why})" if why else ""))


def validate(cfg: dict, where: str, explicit: dict[str, str] | None = None, applicability: bool = True) -> None:
    """Check every value the code relies on.

    ``explicit`` maps the dotted keys that a file or an ``-o`` set to that source (``path`` or
    ``override 'KEY=VALUE'``); with ``applicability``, a key set in a section that ``model.kind``
    does not read is refused.
    """
    explicit = explicit or {}

    def require(cond: bool, key: str, msg: str, *related: str):
        if not cond:
            raise ConfigError(f"{source_of(explicit, where, key, *related)}: {key} {msg}")

    kind_meta = FIELDS["model.kind"]
    require(check(kind_meta, cfg["model"]["kind"]), "model.kind", f"must be {describe(kind_meta)}")
    if applicability:
        check_applicable(cfg, explicit)
    for key, meta in FIELDS.items():
        require(check(meta, _get(cfg, key)), key, f"must be {describe(meta)}")
    _cross_checks(cfg, require)


def _cross_checks(cfg: dict, require) -> None:
    """The rules that join several keys."""
    p = cfg["kplanes"]["proposal"]
    require(len(p["space_res"]) > 0 or len(p["samples"]) == 0, "kplanes.proposal.space_res",
            "must be non-empty when there are proposal levels (kplanes.proposal.samples)",
            "kplanes.proposal.samples")
    require(p["hash_max_res"] >= p["hash_base_res"], "kplanes.proposal.hash_max_res",
            "must be >= kplanes.proposal.hash_base_res", "kplanes.proposal.hash_base_res")
    mx = cfg["mixvoxels"]
    require(mx["voxels_final"] >= mx["voxels_init"], "mixvoxels.voxels_final", "must be >= mixvoxels.voxels_init",
            "mixvoxels.voxels_init")
    heads = cfg["gaussians"]["deform_heads"]
    require(isinstance(heads, list) and len(heads) > 0 and len(set(map(str, heads))) == len(heads)
            and all(h in ("position", "scale", "rotation", "opacity", "sh") for h in heads),
            "gaussians.deform_heads", "must be a non-empty list of distinct names among position, scale, rotation, "
            f"opacity, sh, got {heads!r}")
    to, t = cfg["testoptim"], cfg["train"]
    require(to["variation_steps"] == 0 or cfg["model"]["kind"] == "sync-mixvoxels", "testoptim.variation_steps",
            "only sync-mixvoxels has a variation field; set it to 0")
    require(to["batch_rays"] <= t["batch_rays"], "testoptim.batch_rays",
            f"({to['batch_rays']}) must not exceed train.batch_rays ({t['batch_rays']}), "
            "which sizes the model's ray buffers", "train.batch_rays")
    _check_generate(cfg["data"]["generate"], require)


def _check_generate(gen, require) -> None:
    """``data.generate``: make-scene's argument names and the types of their values."""
    if not gen:
        return
    unknown = sorted(set(gen) - set(GENERATE_KEYS), key=str)
    require(not unknown, "data.generate", f"has unknown key(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(GENERATE_KEYS)})")
    require(re.fullmatch(r"\d+x\d+", str(gen.get("size", "128x96")).lower()) is not None,
            "data.generate", f"size must be WIDTHxHEIGHT such as 128x96, got {gen.get('size')!r}")
    for key in ("cameras", "frames", "seed", "supersample", "crf"):
        require(key not in gen or _is_int(gen[key]), "data.generate", f"{key} must be an integer")
    for key in ("fps", "offset_sigma"):
        require(key not in gen or _is_number(gen[key]), "data.generate", f"{key} must be a number")
    require(isinstance(gen.get("png", False), bool), "data.generate", "png must be true or false")
    for key, allowed in (("family", GENERATE_FAMILIES), ("encoding", GENERATE_ENCODINGS)):
        require(gen.get(key, allowed[0]) in allowed, "data.generate",
                f"{key} must be one of {', '.join(allowed)}, got {gen.get(key)!r}")
