# Shared definitions: wildcard patterns and the target lists derived from params.yaml.
import inloop.datasets


wildcard_constraints:
    dataset=r"[A-Za-z0-9-]+",
    name=r"[A-Za-z0-9-]+",
    geom=r"\d+x\d+_[0-9.]+fps_\d+bit",
    codec=r"x265|hm|vtm|ecm",
    cfg=r"ai|ldp|ra",
    filters=r"off|on",
    qp=r"-?\d+",


DATASETS = ["demo"]


def clips(dataset="demo", split=None):
    """The clips of a dataset as params.yaml defines them (no file is read)."""
    return [c for c in inloop.datasets.clips(config, dataset) if split is None or c.split == split]


def encode_configs(clip):
    """Images are coded all-intra only; videos in every configuration of params."""
    cfgs = config["encode"]["configs"]
    return [c for c in cfgs if c == "ai"] if clip.frames == 1 else cfgs


def encode_frames(cfg, clip_frames):
    """Frames to encode: params' encode.frames.<cfg>, at most the clip's length."""
    return min(int(config["encode"]["frames"][cfg]), clip_frames)


def encoded(dataset, clip, cfg, filters, qp, ext="json"):
    codec = config["encode"]["codec"]
    return f"results/encoded/{codec}/{cfg}/{filters}/{dataset}/{clip.stem}/qp{qp}.{ext}"


def all_encodes():
    return [
        encoded(ds, clip, cfg, filters, qp)
        for ds in DATASETS
        for clip in clips(ds)
        for cfg in encode_configs(clip)
        for filters in config["encode"]["filters"]
        for qp in config["encode"]["qps"]
    ]
