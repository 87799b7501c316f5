"""The project's own reader of VVC / ECM sequence and picture parameter sets (issue #14).

FFmpeg cannot parse ECM streams, and a VTM/ECM encoder's ``TOOL CFG`` echo does
not even mention deblocking, so the filter setting of a VVC-family stream is read
from the stream itself, as :mod:`inloop.codecs.ffmpeg` does for HEVC:

* SPS: ``sps_sao_enabled_flag``, ``sps_alf_enabled_flag``, ``sps_ccalf_enabled_flag``
  and, from ECM-2.0 on, ``sps_ccsao_enabled_flag``;
* PPS: ``deblocking_filter_control_present_flag``,
  ``deblocking_filter_override_enabled_flag``, ``pps_deblocking_filter_disabled_flag``
  and ECM's bilateral filters (``bilateral_filter_flag`` from ECM-1.0,
  ``chroma bilateral_filter_flag`` from ECM-3.0).

Slice-level deblocking overrides: the picture and slice headers may switch
deblocking back on only where the PPS has ``deblocking_filter_override_enabled_flag``
(H.266 7.4.3.5). The project's filters-off encodes set ``LoopFilterOffsetInPPS=1``,
which makes the encoder write that flag as 0 (``EncLib::xInitPPS``), so their PPS
alone proves that no picture is deblocked; a stream whose PPS allows overrides is
not accepted as filters off, since this reader does not parse picture and slice
headers.

Each structure is read to its ``rbsp_trailing_bits`` and must end exactly there
(:meth:`inloop.bitstream.BitReader.trailing_bits`): a syntax element too many or
too few for the encoder's version shows up as an error instead of a wrong flag.

Syntax followed: the ``HLSyntaxReader::parseSPS`` / ``parsePPS`` of the ECM
decoders, with their compile-time switches resolved as each release's TypeDef.h
sets them. ECM-1.0 (VTM-10.0 based) was checked on real streams; ECM-2.0 adds
``sps_ccsao_enabled_flag``, ``sps_aml_enabled_flag``, ``sps_timd_enabled_flag`` and
two GCI flags; ECM-3.0/3.1 add ``six_minus_max_num_bm_merge_cand``,
``sps_ciip_tm_merge_enabled_flag`` and the chroma bilateral filter (read from
their sources; no live stream). ``vtm`` is ECM-1.0's VTM-10.0 base without ECM's
tools (VTM's LADF kept), which VTM-10/11 write; it was not run live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..bitstream import VVC_PPS, VVC_SPS, BitReader, ebsp_to_rbsp, read_nal_units
from ..errors import CodecError


@dataclass(frozen=True)
class VvcSyntax:
    """Which encoder's parameter-set syntax to follow: ``ecm`` None for VTM, else (major, minor)."""

    name: str
    ecm: tuple[int, int] | None = None

    def since(self, major: int, minor: int = 0) -> bool:
        return self.ecm is not None and self.ecm >= (major, minor)


SUPPORTED = "VTM-10/11 and ECM-1.0 to ECM-3.1"


def syntax_for(version: str) -> VvcSyntax:
    """The syntax of an encoder version string (``ECM-1.0 (VTM-10.0)``, ``VTM-11.0``)."""
    m = re.match(r"ECM-(\d+)\.(\d+)", version)
    if m:
        v = (int(m.group(1)), int(m.group(2)))
        if v >= (4, 0):
            raise CodecError(f"the project's parameter-set reader knows {SUPPORTED}, not {version}: the filter "
                             f"setting of its streams cannot be checked")
        return VvcSyntax(f"ECM-{v[0]}.{v[1]}", v)
    m = re.match(r"VTM-(\d+)", version)
    if m and int(m.group(1)) in (10, 11):
        return VvcSyntax(f"VTM-{m.group(1)}")
    raise CodecError(f"the project's parameter-set reader knows {SUPPORTED}, not {version!r}: the filter setting "
                     f"of its streams cannot be checked")


# ----------------------------------------------------------------------- helpers (H.266 7.3.3-7.3.5)


def _profile_tier_level(r: BitReader, syn: VvcSyntax, max_sublayers_minus1: int) -> None:
    """profile_tier_level(1, max_sublayers_minus1) with general_constraints_info()."""
    r.u(7, "general_profile_idc")
    r.flag("general_tier_flag")
    r.u(8, "general_level_idc")
    r.flag("ptl_frame_only_constraint_flag")
    r.flag("ptl_multilayer_enabled_flag")
    if r.flag("gci_present_flag"):
        # 3 flags, u(4), u(2), then flags in the order of the decoder; the ECM-only ones where they sit.
        r.skip(3)
        r.u(4)
        r.u(2)
        r.skip(10)              # NAL unit types: mixed .. idr_rpl
        r.skip(6)               # tiles, slices, subpictures
        r.u(2)                  # three_minus_max_log2_ctu_size
        r.skip(3)               # partition override, mtt, dual tree
        r.skip(6)               # palette, ibc, isp, mrl, mip, cclm
        if syn.ecm:
            r.skip(1)           # gci_no_dimd_constraint_flag
        if syn.since(2):
            r.skip(1)           # gci_no_timd_constraint_flag
        r.skip(16)              # inter: rpr .. gpm
        if syn.ecm:
            r.skip(1)           # gci_no_obmc_constraint_flag
        r.skip(13)              # transform, quantisation, residual
        r.skip(1)               # sao
        if syn.since(2):
            r.skip(1)           # gci_no_ccsao_constraint_flag
        r.skip(5)               # alf, ccalf, lmcs, ladf, virtual boundaries
        r.skip(r.u(8, "gci_num_reserved_bits"))
    while not r.byte_aligned():
        r.skip(1)               # gci_alignment_zero_bit
    present = [r.flag() for _ in range(max_sublayers_minus1)]
    while not r.byte_aligned():
        r.skip(1)               # ptl_reserved_zero_bit
    r.skip(8 * sum(present))    # sublayer_level_idc
    r.skip(32 * r.u(8, "ptl_num_sub_profiles"))


def _dpb_parameters(r: BitReader, max_sublayers_minus1: int, sublayer_info: bool) -> None:
    for _ in range(0 if sublayer_info else max_sublayers_minus1, max_sublayers_minus1 + 1):
        r.ue(), r.ue(), r.ue()  # max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase_plus1


def _general_hrd(r: BitReader) -> dict:
    r.u(32), r.u(32)            # num_units_in_tick, time_scale
    nal, vcl = r.flag(), r.flag()
    r.flag()                    # general_same_pic_timing_in_all_ols_flag
    du = r.flag()
    if du:
        r.u(8)
    r.u(4), r.u(4)
    if du:
        r.u(4)
    return {"nal": nal, "vcl": vcl, "du": du, "cpb_cnt_minus1": r.ue()}


def _ols_hrd(r: BitReader, hrd: dict, first: int, max_sublayers_minus1: int) -> None:
    for _ in range(first, max_sublayers_minus1 + 1):
        fixed_within_cvs = 1 if r.flag() else r.flag()  # fixed_pic_rate_general_flag / _within_cvs_flag
        if fixed_within_cvs:
            r.ue()              # elemental_duration_in_tc_minus1
        elif hrd["cpb_cnt_minus1"] == 0:
            r.flag()            # low_delay_hrd_flag
        for present in (hrd["nal"], hrd["vcl"]):
            if present:
                for _ in range(hrd["cpb_cnt_minus1"] + 1):
                    r.ue(), r.ue()
                    if hrd["du"]:
                        r.ue(), r.ue()
                    r.flag()    # cbr_flag


def _ref_pic_list(r: BitReader, sps: dict, rpls_idx: int) -> None:
    """ref_pic_list_struct(listIdx, rplsIdx) in the SPS."""
    n = r.ue()
    ltrp_in_sh = 1
    if sps["long_term_refs"] and n > 0:
        ltrp_in_sh = r.flag()
    for i in range(n):
        inter_layer = r.flag() if sps["inter_layer_refs"] else 0
        if inter_layer:
            r.ue()              # ilrp_idx
            continue
        long_term = not r.flag() if sps["long_term_refs"] else False  # st_ref_pic_flag
        if not long_term:
            abs_delta = r.ue()
            if (not sps["weighted_pred"] and not sps["weighted_bipred"]) or i == 0:
                abs_delta += 1
            if abs_delta > 0:
                r.flag()        # strp_entry_sign_flag
        elif not ltrp_in_sh:
            r.u(sps["bits_for_poc"])


# ----------------------------------------------------------------------- SPS


def parse_sps(rbsp: bytes, syn: VvcSyntax) -> dict:
    """The loop-filter flags of one SPS (and what the PPS check needs); reads it to its trailing bits."""
    r = BitReader(rbsp, f"{syn.name} SPS")
    s: dict = {"reader": r}
    r.u(4, "sps_seq_parameter_set_id")
    vps_id = r.u(4, "sps_video_parameter_set_id")
    max_sub = r.u(3, "sps_max_sublayers_minus1")
    chroma = r.u(2, "sps_chroma_format_idc")
    ctb_log2 = r.u(2, "sps_log2_ctu_size_minus5") + 5
    ptl_dpb_hrd = r.flag("sps_ptl_dpb_hrd_params_present_flag")
    if ptl_dpb_hrd:
        _profile_tier_level(r, syn, max_sub)
    r.flag("sps_gdr_enabled_flag")
    if r.flag("sps_ref_pic_resampling_enabled_flag"):
        r.flag("sps_res_change_in_clvs_allowed_flag")
    width, height = r.ue("sps_pic_width_max_in_luma_samples"), r.ue("sps_pic_height_max_in_luma_samples")
    if r.flag("sps_conformance_window_flag"):
        for _ in range(4):
            r.ue()
    ctu = 1 << ctb_log2
    if r.flag("sps_subpic_info_present_flag"):
        _subpic_info(r, width, height, ctu)
    r.ue("sps_bitdepth_minus8")
    r.flag("sps_entropy_coding_sync_enabled_flag")
    r.flag("sps_entry_point_offsets_present_flag")
    bits_for_poc = r.u(4, "sps_log2_max_pic_order_cnt_lsb_minus4") + 4
    if r.flag("sps_poc_msb_cycle_flag"):
        r.ue()
    r.skip(8 * r.u(2, "sps_num_extra_ph_bytes"))
    r.skip(8 * r.u(2, "sps_num_extra_sh_bytes"))
    if ptl_dpb_hrd:
        sublayer_dpb = r.flag("sps_sublayer_dpb_params_flag") if max_sub > 0 else 0
        _dpb_parameters(r, max_sub, bool(sublayer_dpb))
    r.ue("sps_log2_min_luma_coding_block_size_minus2")
    r.flag("sps_partition_constraints_override_enabled_flag")
    r.ue("sps_log2_diff_min_qt_min_cb_intra_slice_luma")
    if r.ue("sps_max_mtt_hierarchy_depth_intra_slice_luma"):
        r.ue(), r.ue()
    dual_tree = r.flag("sps_qtbtt_dual_tree_intra_flag") if chroma != 0 else 0
    if dual_tree:
        r.ue()
        if r.ue("sps_max_mtt_hierarchy_depth_intra_slice_chroma"):
            r.ue(), r.ue()
    r.ue("sps_log2_diff_min_qt_min_cb_inter_slice")
    if r.ue("sps_max_mtt_hierarchy_depth_inter_slice"):
        r.ue(), r.ue()
    if syn.ecm:      # TU_256
        max_tb_log2 = r.ue("sps_log2_max_luma_transform_size_minus5") + 5 if ctu > 32 else 5
    else:
        max_tb_log2 = (6 if r.flag("sps_max_luma_transform_size_64_flag") else 5) if ctu > 32 else 5
    transform_skip = r.flag("sps_transform_skip_enabled_flag")
    if transform_skip:
        r.ue("sps_log2_transform_skip_max_size_minus2")
        r.flag("sps_bdpcm_enabled_flag")
    if r.flag("sps_mts_enabled_flag"):
        r.flag(), r.flag()
    lfnst = r.flag("sps_lfnst_enabled_flag")
    if chroma != 0:
        joint_cbcr = r.flag("sps_joint_cbcr_enabled_flag")
        same_table = r.flag("sps_same_qp_table_for_chroma_flag")
        for _ in range(1 if same_table else (3 if joint_cbcr else 2)):
            r.se("sps_qp_table_start_minus26")
            for _ in range(r.ue("sps_num_points_in_qp_table_minus1") + 1):
                r.ue(), r.ue()
    s["sao"] = r.flag("sps_sao_enabled_flag")
    if syn.since(2):
        s["ccsao"] = r.flag("sps_ccsao_enabled_flag")
    s["alf"] = r.flag("sps_alf_enabled_flag")
    s["ccalf"] = r.flag("sps_ccalf_enabled_flag") if s["alf"] and chroma != 0 else 0
    if syn.ecm:
        r.u(4, "num_predicted_coef_signs")
    s["lmcs"] = r.flag("sps_lmcs_enabled_flag")
    s["weighted_pred"], s["weighted_bipred"] = r.flag("sps_weighted_pred_flag"), r.flag("sps_weighted_bipred_flag")
    s["long_term_refs"] = r.flag("sps_long_term_ref_pics_flag")
    s["inter_layer_refs"] = r.flag("sps_inter_layer_prediction_enabled_flag") if vps_id > 0 else 0
    s["bits_for_poc"] = bits_for_poc
    r.flag("sps_idr_rpl_present_flag")
    rpl1_same = r.flag("sps_rpl1_same_as_rpl0_flag")
    for _ in range(1 if rpl1_same else 2):
        for i in range(r.ue("sps_num_ref_pic_lists")):
            _ref_pic_list(r, s, i)
    if syn.ecm:
        r.flag("sps_lic_enabled_flag")
    r.flag("sps_ref_wraparound_enabled_flag")
    if r.flag("sps_temporal_mvp_enabled_flag"):
        r.flag("sps_sbtmvp_enabled_flag")
    amvr = r.flag("sps_amvr_enabled_flag")
    if syn.since(2):
        r.flag("sps_aml_enabled_flag")
    if r.flag("sps_bdof_enabled_flag"):
        r.flag("sps_bdof_control_present_in_ph_flag")
    r.flag("sps_smvd_enabled_flag")
    if r.flag("sps_dmvr_enabled_flag"):
        r.flag("sps_dmvr_control_present_in_ph_flag")
    if r.flag("sps_mmvd_enabled_flag"):
        r.flag("sps_mmvd_fullpel_only_enabled_flag")
    max_merge = (15 if syn.ecm else 6) - r.ue("sps_six_minus_max_num_merge_cand")  # MRG_MAX_NUM_CANDS
    r.flag("sps_sbt_enabled_flag")
    if syn.ecm:
        r.flag("sps_dmvd_enabled_flag")
    if syn.since(3):
        r.ue("six_minus_max_num_bm_merge_cand")
    if r.flag("sps_affine_enabled_flag"):
        r.ue("sps_five_minus_max_num_subblock_merge_cand")
        r.flag("sps_6param_affine_enabled_flag")
        if syn.ecm:
            r.flag("sps_affine_mmvd_enabled_flag")
        if amvr:
            r.flag("sps_affine_amvr_enabled_flag")
        if r.flag("sps_affine_prof_enabled_flag"):
            r.flag("sps_prof_control_present_in_ph_flag")
    r.flag("sps_bcw_enabled_flag")
    ciip = r.flag("sps_ciip_enabled_flag")
    if syn.since(3) and ciip:
        r.flag("sps_ciip_tm_merge_enabled_flag")
    if max_merge >= 2:
        if r.flag("sps_gpm_enabled_flag") and max_merge >= 3:
            r.ue("sps_max_num_merge_cand_minus_max_num_gpm_cand")
    if syn.ecm and r.flag("inter_multi_hyp_enable_flag"):
        r.ue(), r.ue(), r.ue()
    r.ue("sps_log2_parallel_merge_level_minus2")
    r.flag("sps_isp_enabled_flag")
    r.flag("sps_mrl_enabled_flag")
    r.flag("sps_mip_enabled_flag")
    if syn.ecm:
        r.flag("sps_dimd_enabled_flag")
        if r.flag("sps_intraTMP_enabled_flag"):
            r.ue("sps_log2_intra_tmp_max_size")
    if syn.since(2):
        r.flag("sps_timd_enabled_flag")
    if chroma != 0:
        r.flag("sps_cclm_enabled_flag")
    if chroma == 1:
        r.flag("sps_chroma_horizontal_collocated_flag")
        r.flag("sps_chroma_vertical_collocated_flag")
    palette = r.flag("sps_palette_enabled_flag")
    act = r.flag("sps_act_enabled_flag") if chroma == 3 and max_tb_log2 != 6 else 0
    if transform_skip or palette:
        r.ue("sps_min_qp_prime_ts")
    if r.flag("sps_ibc_enabled_flag"):
        r.ue("sps_six_minus_max_num_ibc_merge_cand")
    if r.flag("sps_ladf_enabled_flag"):
        n = r.u(2, "sps_num_ladf_intervals_minus2") + 2
        r.se()
        for _ in range(n - 1):
            r.se(), r.ue()
    if syn.ecm:
        r.flag("sps_obmc_flag")
    scaling_list = r.flag("sps_explicit_scaling_list_enabled_flag")
    if lfnst and scaling_list:
        r.flag("sps_scaling_matrix_for_lfnst_disabled_flag")
    alt_cs_disabled = r.flag("sps_scaling_matrix_for_alternative_colour_space_disabled_flag") \
        if act and scaling_list else 0
    if alt_cs_disabled:
        r.flag("sps_scaling_matrix_designated_colour_space_flag")
    r.flag("sps_dep_quant_enabled_flag")
    r.flag("sps_sign_data_hiding_enabled_flag")
    if r.flag("sps_virtual_boundaries_enabled_flag"):
        if r.flag("sps_virtual_boundaries_present_flag"):
            for _ in range(2):
                for _ in range(r.u(2)):
                    r.ue()
    if ptl_dpb_hrd and r.flag("sps_timing_hrd_params_present_flag"):
        hrd = _general_hrd(r)
        sub_cpb = r.flag("sps_sublayer_cpb_params_present_flag") if max_sub > 0 else 0
        _ols_hrd(r, hrd, 0 if sub_cpb else max_sub, max_sub)
    r.flag("sps_field_seq_flag")
    if r.flag("sps_vui_parameters_present_flag"):
        size = r.ue("sps_vui_payload_size_minus1") + 1
        while not r.byte_aligned():
            r.skip(1)
        r.skip(8 * size)
    if r.flag("sps_extension_present_flag"):
        ext = [r.flag() for _ in range(8)]   # NUM_SPS_EXTENSION_FLAGS
        if ext[0]:                            # SPS_EXT__REXT
            r.skip(7)
        if any(ext[1:]):
            while r.more_rbsp_data():
                r.skip(1)
    r.trailing_bits()
    return s


def _subpic_info(r: BitReader, width: int, height: int, ctu: int) -> None:
    n = r.ue("sps_num_subpics_minus1") + 1
    if n > 1:
        independent = r.flag("sps_independent_subpics_flag")
        same_size = r.flag("sps_subpic_same_size_flag")
        w_ctus, h_ctus = -(-width // ctu), -(-height // ctu)
        wbits, hbits = (w_ctus - 1).bit_length(), (h_ctus - 1).bit_length()  # Ceil(Log2(x))
        for i in range(n):
            if not same_size or i == 0:
                if i > 0 and width > ctu:
                    r.u(wbits)
                if i > 0 and height > ctu:
                    r.u(hbits)
                if i < n - 1 and width > ctu:
                    r.u(wbits)
                if i < n - 1 and height > ctu:
                    r.u(hbits)
            if not independent:
                r.flag(), r.flag()
    id_len = r.ue("sps_subpic_id_len_minus1") + 1
    if r.flag("sps_subpic_id_mapping_explicitly_signalled_flag"):
        if r.flag("sps_subpic_id_mapping_present_flag"):
            r.skip(id_len * n)


# ----------------------------------------------------------------------- PPS


def _sizes(total: int, explicit: list[int]) -> list[int]:
    """Tile column widths / row heights in CTUs: the explicit ones, then the last repeated (H.266 6.5.1)."""
    sizes, left = list(explicit), total - sum(explicit)
    while left >= explicit[-1]:
        sizes.append(explicit[-1])
        left -= explicit[-1]
    if left > 0:
        sizes.append(left)
    return sizes


def parse_pps(rbsp: bytes, syn: VvcSyntax) -> dict:
    """The deblocking and bilateral-filter flags of one PPS; reads it to its trailing bits."""
    r = BitReader(rbsp, f"{syn.name} PPS")
    p: dict = {"reader": r}
    r.u(6, "pps_pic_parameter_set_id")
    r.u(4, "pps_seq_parameter_set_id")
    r.flag("pps_mixed_nalu_types_in_pic_flag")
    width, height = r.ue("pps_pic_width_in_luma_samples"), r.ue("pps_pic_height_in_luma_samples")
    if r.flag("pps_conformance_window_flag"):
        for _ in range(4):
            r.ue()
    if r.flag("pps_scaling_window_explicit_signalling_flag"):
        for _ in range(4):
            r.se()
    r.flag("pps_output_flag_present_flag")
    no_partition = r.flag("pps_no_pic_partition_flag")
    if r.flag("pps_subpic_id_mapping_present_flag"):
        n_subpics = r.ue("pps_num_subpics_minus1") + 1 if not no_partition else 1
        id_len = r.ue("pps_subpic_id_len_minus1") + 1
        r.skip(id_len * n_subpics)
    if not no_partition:
        _tiles_and_slices(r, width, height)
    r.flag("pps_cabac_init_present_flag")
    r.ue(), r.ue()                            # num_ref_idx_default_active_minus1[0..1]
    r.flag("pps_rpl1_idx_present_flag")
    wp, wbp = r.flag("pps_weighted_pred_flag"), r.flag("pps_weighted_bipred_flag")
    if r.flag("pps_ref_wraparound_enabled_flag"):
        r.ue("pps_pic_width_minus_wraparound_offset")
    r.se("pps_init_qp_minus26")
    r.flag("pps_cu_qp_delta_enabled_flag")
    chroma_tools = r.flag("pps_chroma_tool_offsets_present_flag")
    if chroma_tools:
        r.se(), r.se()                        # pps_cb_qp_offset, pps_cr_qp_offset
        joint = r.flag("pps_joint_cbcr_qp_offset_present_flag")
        if joint:
            r.se()
        r.flag("pps_slice_chroma_qp_offsets_present_flag")
        if r.flag("pps_cu_chroma_qp_offset_list_enabled_flag"):
            for _ in range(r.ue("pps_chroma_qp_offset_list_len_minus1") + 1):
                r.se(), r.se()
                if joint:
                    r.se()
    if syn.ecm:
        p["bif"] = r.flag("bilateral_filter_flag")
        if p["bif"]:
            r.u(2), r.se()
    if syn.since(3):
        p["chroma_bif"] = r.flag("chroma_bilateral_filter_flag")
        if p["chroma_bif"]:
            r.u(2), r.se()
    p["deblocking_control_present"] = r.flag("pps_deblocking_filter_control_present_flag")
    p["deblocking_override_enabled"] = p["deblocking_disabled"] = 0
    if p["deblocking_control_present"]:
        p["deblocking_override_enabled"] = r.flag("pps_deblocking_filter_override_enabled_flag")
        p["deblocking_disabled"] = r.flag("pps_deblocking_filter_disabled_flag")
        if not no_partition and p["deblocking_override_enabled"]:
            r.flag("pps_dbf_info_in_ph_flag")
        if not p["deblocking_disabled"]:
            if syn.ecm:   # DB_PARAM_TID: offsets per temporal layer, no chroma offsets
                for _ in range(2):
                    for _ in range(r.u(3) + 1):
                        r.se()
            else:
                r.se(), r.se()
                if chroma_tools:
                    r.se(), r.se(), r.se(), r.se()
    if not no_partition:
        rpl_in_ph = r.flag("pps_rpl_info_in_ph_flag")
        r.flag("pps_sao_info_in_ph_flag")
        r.flag("pps_alf_info_in_ph_flag")
        if (wp or wbp) and rpl_in_ph:
            r.flag("pps_wp_info_in_ph_flag")
        r.flag("pps_qp_delta_info_in_ph_flag")
    r.flag("pps_picture_header_extension_present_flag")
    r.flag("pps_slice_header_extension_present_flag")
    if r.flag("pps_extension_flag"):
        while r.more_rbsp_data():
            r.skip(1)
    r.trailing_bits()
    return p


def _tiles_and_slices(r: BitReader, width: int, height: int) -> None:
    ctu = 1 << (r.u(2, "pps_log2_ctu_size_minus5") + 5)
    n_cols, n_rows = r.ue() + 1, r.ue() + 1
    cols = _sizes(-(-width // ctu), [r.ue() + 1 for _ in range(n_cols)])
    rows = _sizes(-(-height // ctu), [r.ue() + 1 for _ in range(n_rows)])
    n_tile_cols = len(cols)
    rect = 1
    if len(cols) * len(rows) > 1:
        r.flag("pps_loop_filter_across_tiles_enabled_flag")
        rect = r.flag("pps_rect_slice_flag")
    single = r.flag("pps_single_slice_per_subpic_flag") if rect else 0
    n_slices = 1
    if rect and not single:
        n_slices = r.ue("pps_num_slices_in_pic_minus1") + 1
        delta_present = r.flag("pps_tile_idx_delta_present_flag") if n_slices - 1 > 1 else 0
        tile, i, heights = 0, 0, {}
        while i < n_slices - 1:
            w = r.ue() + 1 if tile % n_tile_cols != n_tile_cols - 1 else 1
            if tile // n_tile_cols != len(rows) - 1 and (delta_present or tile % n_tile_cols == 0):
                h = r.ue() + 1
            else:
                h = 1 if tile // n_tile_cols == len(rows) - 1 else heights[i - 1]
            heights[i] = h
            if w == 1 and h == 1 and rows[tile // n_tile_cols] > 1:
                n_exp = r.ue("pps_num_exp_slices_in_tile")
                if n_exp:
                    left, j, last = rows[tile // n_tile_cols], 0, 0
                    for j in range(n_exp):
                        last = r.ue() + 1
                        left -= last
                    j = n_exp
                    while left >= last:
                        left -= last
                        j += 1
                    j += 1 if left > 0 else 0
                    for k in range(j):
                        heights[i + k] = 1
                    i += j - 1
            if i < n_slices - 1:
                if delta_present:
                    tile += r.se("pps_tile_idx_delta_val")
                else:
                    tile += w
                    if tile % n_tile_cols == 0:
                        tile += (heights[i] - 1) * n_tile_cols
            i += 1
    if not rect or single or n_slices > 1:
        r.flag("pps_loop_filter_across_slices_enabled_flag")


# ----------------------------------------------------------------------- the check


FILTER_FIELDS = {  # what parse_sps / parse_pps return -> the syntax element it is
    "sao": "sps_sao_enabled_flag", "ccsao": "sps_ccsao_enabled_flag", "alf": "sps_alf_enabled_flag",
    "ccalf": "sps_ccalf_enabled_flag", "bif": "bilateral_filter_flag", "chroma_bif": "chroma_bilateral_filter_flag",
    "deblocking_disabled": "pps_deblocking_filter_disabled_flag",
    "deblocking_override_enabled": "pps_deblocking_filter_override_enabled_flag",
}


def vvc_filter_flags(bitstream, version: str) -> dict:
    """What a VVC/ECM stream's own SPSs and PPSs say about every in-loop filter.

    Returns, per syntax element, the values seen in the stream's parameter sets,
    and per filter whether any parameter set enables it (``deblocking_enabled``,
    ``sao_enabled``, ...); ``deblocking_overridable`` is true where a PPS lets
    picture or slice headers change deblocking.
    """
    syn = syntax_for(version)
    seen: dict[str, set] = {}
    count = {VVC_SPS: 0, VVC_PPS: 0}
    for u in read_nal_units(bitstream):
        t = u.type("vvc")
        if t not in count:
            continue
        what = "SPS" if t == VVC_SPS else "PPS"
        try:
            fields = (parse_sps if t == VVC_SPS else parse_pps)(ebsp_to_rbsp(u.data[2:]), syn)
        except CodecError as exc:
            raise CodecError(f"{bitstream}: {exc} ({what} at byte {u.offset}, read with the syntax of "
                             f"{syn.name})") from None
        count[t] += 1
        for k in FILTER_FIELDS.keys() & fields.keys():
            seen.setdefault(k, set()).add(int(fields[k]))
    if not count[VVC_SPS] or not count[VVC_PPS]:
        raise CodecError(f"{bitstream}: no SPS or no PPS found (is it a VVC/ECM Annex B stream?)")
    flags: dict = {FILTER_FIELDS[k]: sorted(v) for k, v in seen.items()}
    flags.update({"syntax": syn.name, "sps": count[VVC_SPS], "pps": count[VVC_PPS],
                  "deblocking_enabled": 0 in seen["deblocking_disabled"],
                  "deblocking_overridable": 1 in seen["deblocking_override_enabled"]})
    for k in ("sao", "ccsao", "alf", "ccalf", "bif", "chroma_bif"):
        if k in seen:
            flags[f"{k}_enabled"] = 1 in seen[k]
    return flags


def vvc_filter_flags_mismatch(flags: dict, filters: str) -> list[str]:
    """What in :func:`vvc_filter_flags`'s result contradicts ``filters`` ('off' or 'on'); [] if nothing."""
    enabled = {k[:-len("_enabled")]: v for k, v in flags.items() if k.endswith("_enabled")}
    if filters == "off":
        wrong = [f"{k} enabled" for k, on in enabled.items() if on]
        if flags["deblocking_overridable"]:
            wrong.append("deblocking may be switched on per picture or slice "
                         "(pps_deblocking_filter_override_enabled_flag=1)")
        return wrong
    return [f"{k} disabled" for k, on in enabled.items() if not on]
