"""Aggregation and reports: paper-shaped tables, the papers' claims, plots and one HTML page.

* :mod:`.aggregate` -- evaluation JSONs -> DataFrame -> BD-rate / BD-PSNR per
  sequence (model vs anchor, model vs filters off, filters off vs anchor) ->
  class and overall averages.
* :mod:`.tables` -- GL-Fusion Tables II-VI, SPiLF Table 2, NL-ConvLSTM Tables 4-5
  and section 4.3 shapes, as CSV and Markdown.
* :mod:`.claims` -- the registry of claimed numbers (``claims/*.yaml``) and the
  claimed-vs-reproduced comparison.
* :mod:`.plots` -- RD curves, per-frame PSNR, training curves (PNG + SVG).
* :mod:`.report` -- ``build_report`` and the ``inloop report`` sub-command.
"""
