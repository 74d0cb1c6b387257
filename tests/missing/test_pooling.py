"""The label plan of pooled datasets: union by name, aliases, coarse and dataset-specific labels, case ids."""

import numpy as np
import pytest

from phidice.missing.pooling import PoolSource, case_ids, check_label_map_config, plan_labels

A = PoolSource("Dataset701_A", {"background": 0, "Liver": 1, "spleen": 2})
B = PoolSource("Dataset702_B", {"background": 0, "kidney": 1, "LIVER": 2, "aorta": 3})
C = PoolSource("Dataset703_C", {"background": 0, "kidney_left": 1, "kidney_right": 2, "aorta": 3})


def test_union_by_name_in_order_of_first_appearance():
    plan = plan_labels([A, B])
    assert plan.names == ["background", "Liver", "spleen", "kidney", "aorta"]
    assert plan.luts[0].tolist() == [0, 1, 2] and plan.luts[1].tolist() == [0, 3, 1, 4]
    assert plan.is_identity(0) and not plan.is_identity(1)
    assert plan.annotated(0) == [1, 2] and plan.annotated(1) == [1, 3, 4]
    assert plan.annotated(1, [2]) == [1]  # a case of B annotating only its liver
    np.testing.assert_array_equal(plan.remap(1, np.array([[0, 1], [2, 3]], np.uint8)), [[0, 3], [1, 4]])
    assert plan.remap(1, np.zeros(2, np.int16)).dtype == np.int16
    # the same sources in the other order: deterministic, B's values first
    assert plan_labels([B, A]).names == ["background", "kidney", "LIVER", "aorta", "spleen"]


def test_aliases_coarse_specific_and_order():
    cfg = check_label_map_config(
        {
            "aliases": {"Leber": "liver"},
            "coarse": {"kidney": ["kidney_left", "kidney_right"]},
            "sources": {"702": {"aliases": {"aorta": "aorta_B"}}},
            "order": ["kidney_right", "kidney_left", "Liver", "spleen", "aorta", "aorta_B"],
        }
    )
    plan = plan_labels([A, B, C], cfg)
    assert plan.names == ["background", "kidney_right", "kidney_left", "Liver", "spleen", "aorta", "aorta_B"]
    assert plan.luts[1].tolist() == [0, 0, 3, 6]  # B's coarse kidney → 0, its aorta stays B's own
    assert plan.unannotated[1] == [1, 2] and plan.annotated(1) == [3, 6]
    assert plan.annotated(2) == [1, 2, 5]
    assert plan.record()["sources"][1]["origin"]["1"] == "coarse: kidney_left | kidney_right"
    assert "kidney (1, coarse)" in plan.table_markdown()


@pytest.mark.parametrize(
    "cfg, sources, match",
    [
        ({"coarse": {"kidney": ["kidney_left", "nope"]}}, [B, C], "part 'nope' is no merged label"),
        ({"order": ["Liver"]}, [A], "'order' must list every merged label once"),
        ({"sources": {"9": {}}}, [A], r"sources \['9'\] match none"),
        ({"colour": {}}, [A], "unknown key"),
        ({"aliases": {"liver": 3}}, [A], "expected an object"),
    ],
)
def test_plan_errors(cfg, sources, match):
    with pytest.raises(ValueError, match=match):
        plan_labels(sources, check_label_map_config(cfg))


def test_errors_of_sources_and_values():
    with pytest.raises(ValueError, match="'Liver' and 'liver', the same name up to case"):
        plan_labels([PoolSource("X", {"background": 0, "Liver": 1, "liver": 2})])
    coarse_own = check_label_map_config({"coarse": {"kidney_left": ["aorta", "spleen"]}})
    with pytest.raises(ValueError, match="also labels itself"):
        plan_labels([A, C], coarse_own)
    plan = plan_labels([A])
    with pytest.raises(ValueError, match=r"Dataset701_A: map.nii holds label value\(s\) \[3\]"):
        plan.remap(0, np.array([0, 3]), where="map.nii")


def test_remap_float_and_bool_maps():
    """Float maps of integer values keep their dtype; a fraction or a NaN is named; bool maps are labels 0/1."""
    plan = plan_labels([A, B])
    out = plan.remap(1, np.array([0.0, 1.0, 3.0], np.float32))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 3.0, 4.0]
    one = plan_labels([PoolSource("D", {"background": 0, "liver": 1})])
    assert one.remap(0, np.array([False, True])).tolist() == [False, True]
    with pytest.raises(ValueError, match="m.nii has dtype bool, too small for merged value 4"):
        plan.remap(1, np.array([False, True]), where="m.nii")  # 1 → 3 would read back as True
    for bad, shown in ((0.5, r"\[0.5\]"), (np.nan, r"\[nan\]")):
        with pytest.raises(ValueError, match=rf"m.nii holds non-integer value\(s\) {shown} \(dtype float64\)"):
            plan.remap(1, np.array([0.0, bad]), where="m.nii")


def test_case_ids_prefix_only_collisions():
    ids = case_ids([["a", "b"], ["b", "c"], ["c"]], ["Dataset701_A", "Dataset702_B", "/x/other"])
    assert ids == [["a", "D701__b"], ["D702__b", "D702__c"], ["S3__c"]]
    assert [i.split("__", 1) for i in ids[1]] == [["D702", "b"], ["D702", "c"]]
