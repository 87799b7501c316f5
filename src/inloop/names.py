"""The names the params, the workflow's wildcards, the codecs and the report share: one place each.

Low in the layers (no imports), so that the report can order its tables by configuration without
depending on codec code (a codec edit must not rerun the report)."""

CODECS = ("x265", "hm", "vtm", "ecm")  # inloop.codecs.CODECS holds their classes, in this order
CONFIGS = ("ai", "ldp", "ra")  # all intra, low delay P, random access (the CTC configurations)
FILTERS = ("off", "on")  # the codec's loop filters (deblocking, SAO, ALF...) off or on
