"""The names the params, the workflow's wildcards, the codecs and the report share: one place each.

Low in the layers (no imports), so that the report can order its tables by configuration without
depending on codec code (a codec edit must not rerun the report)."""

CODECS = ("x265", "hm", "vtm", "ecm")  # inloop.codecs.CODECS holds their classes, in this order
CONFIGS = ("ai", "ldp", "ra")  # all intra, low delay P, random access (the CTC configurations)
FILTERS = ("off", "on")  # the codec's loop filters (deblocking, SAO, ALF...) off or on

# Each codec's coding tree unit (x265 --ctu 64 and HM's MaxCUWidth 64: HEVC; VTM/ECM CTUSize 128):
# the grid of the switched filter's flags (inloop.evaluation.switching; evaluate.switching.ctu overrides).
CTU_SIZE = {"x265": 64, "hm": 64, "vtm": 128, "ecm": 128}
