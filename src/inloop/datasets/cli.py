"""``inloop datasets ...``: fetch, list, check, verify.

Wired into the main CLI by :func:`register` (two lines in ``inloop/cli.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import paths


def _params(args):
    from ..params import cli_params

    return cli_params(args.params)


def cmd_fetch(args: argparse.Namespace) -> int:
    params = _params(args)
    if args.lock:
        params.setdefault("datasets", {})["lock"] = args.lock
    if args.name == "demo":
        from .demo import fetch_demo

        fetch_demo(params, args.out, cache=args.cache, progress=not args.no_progress)
        return 0
    from .fetch import fetch_dataset

    path = fetch_dataset(args.name, params, args.out, cache=args.cache, root=args.root, limit=args.limit,
                         progress=not args.no_progress, archive=args.archive, url=args.url)
    print(f"{args.name}: manifest {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import REGISTRY

    if args.json:
        print(json.dumps({n: {"title": d.title, "kind": d.kind, "papers": d.papers, "homepage": d.homepage,
                              "license": d.license, "split": d.split,
                              "files": [f.__dict__ for f in d.files],
                              "layout": d.layout} for n, d in REGISTRY.items()}, indent=2))
        return 0
    for n, d in REGISTRY.items():
        size = ", ".join(f"{f.fname} {f.approx_size}" for f in d.files[:2]) + (" ..." if len(d.files) > 2 else "")
        print(f"{n:20s} {d.kind:8s} {d.title}")
        print(f"{'':29s}used by: {d.papers}")
        print(f"{'':29s}source:  {d.homepage}" + (f"  [{size}]" if size else ""))
        print(f"{'':29s}split:   {d.split}")
        print(f"{'':29s}licence: {d.license}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .fetch import check_user_dataset

    params = _params(args)
    root = args.root or ((params.get("datasets") or {}).get("roots") or {}).get(args.name)
    pairs = check_user_dataset(args.name, root)
    print(f"{args.name}: {len(pairs)} items in {root} match the registry")
    return 0


def cmd_splits(args: argparse.Namespace) -> int:
    from .splits import check_splits

    r = check_splits(args.train, args.test, tuple(args.train_splits), args.out)
    print(f"no test item in training: {r['test_items']} test and {r['train_items']} training items compared by sha256")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .manifest import verify_manifest

    entries = verify_manifest(Path(args.out) / args.name / "manifest.json")
    print(f"{args.name}: {len(entries)} files match {Path(args.out) / args.name / 'manifest.json'}")
    return 0


def register(sub) -> None:
    """Add the ``datasets`` command group to the main parser's sub-parsers."""
    p = sub.add_parser("datasets", help="dataset registry: fetch, list, check, verify")
    dsub = p.add_subparsers(dest="datasets_command", required=True)

    f = dsub.add_parser("fetch", help="download/verify/extract/convert a dataset; write its manifest")
    f.add_argument("name", help="dataset name (`inloop datasets list`), e.g. demo")
    f.add_argument("--out", default=paths.DATA, help=f"output root (default {paths.DATA})")
    f.add_argument("--params", help="params.yaml (default ./params.yaml)")
    f.add_argument("--cache", help="download cache (default $INLOOP_CACHE or params datasets.cache)")
    f.add_argument("--lock", help="lock file of recorded hashes (default params datasets.lock)")
    f.add_argument("--root", help="folder of a user-provided dataset (default params datasets.roots.NAME), or the "
                   "unpacked folder of a downloadable one you already have")
    f.add_argument("--archive", help="a local copy of a single-file dataset's published archive (e.g. Flickr2K.tar), "
                   "checked like a download")
    f.add_argument("--url", help="another address of a single-file dataset's archive (a mirror), checked the same way")
    f.add_argument("--limit", type=int, help="convert only the first N items per split (smoke tests)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.set_defaults(func=cmd_fetch)

    ls = dsub.add_parser("list", help="list the registry: source, split, licence, who uses it")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    c = dsub.add_parser("check", help="check a user-provided dataset folder against the registry")
    c.add_argument("name")
    c.add_argument("--root", help="the folder (default params datasets.roots.NAME)")
    c.add_argument("--params")
    c.set_defaults(func=cmd_check)

    s = dsub.add_parser("splits", help="check that no test item's content is in the training data (before training)")
    s.add_argument("--train", nargs="+", required=True, help="manifests of the training datasets")
    s.add_argument("--test", nargs="+", required=True, help="manifests of the test datasets")
    s.add_argument("--train-splits", nargs="+", default=["train"], help="manifest splits used for training")
    s.add_argument("--out", help="result JSON (written only when the check passes)")
    s.set_defaults(func=cmd_splits)

    v = dsub.add_parser("verify", help="check a fetched dataset's files against its manifest")
    v.add_argument("name")
    v.add_argument("--out", default=paths.DATA)
    v.set_defaults(func=cmd_verify)
