"""The GradientMonitor claims of the report on hand-made monitor records: yes when BI (B ≥ 2) and I_ε drive the
predicted volume on empty maps towards 0 and I does not, no otherwise; the plot is drawn."""

import pytest

from phidice.experiments.report import check_monitor, monitor_curve, plot_monitor


def _run(config, B, empty_ml, labelled_ml=10.0, channel_key=0):
    key = f"binary_{config}_B{B}_partial"
    history = [
        {
            "epoch": e,
            "per_class": {
                channel_key: {
                    "empty_map_predicted_volume_ml": v,
                    "nonempty_predicted_volume_ml": labelled_ml,
                    "empty_map_gradient_share": 1e-7 if config == "I" else 0.2,
                }
            },
        }
        for e, v in enumerate(empty_ml)
    ]
    return key, {
        "key": key,
        "task": "binary",
        "config": config,
        "batch_size": B,
        "labelling": "partial",
        "class_names": ["lesion"],
        "missing_group": "lgg",
        "missing_class": 1,
        "monitor": history,
    }


def _grid(i_last=8.0, bi_last=0.5, eps_last=0.4, key=0):
    return dict(
        [
            _run("I", 2, [9.0, i_last], channel_key=key),
            _run("BI", 2, [9.0, bi_last], channel_key=key),
            _run("BI", 1, [9.0, 8.5], channel_key=key),
            _run("I_eps", 2, [9.0, eps_last], channel_key=key),
        ]
    )


@pytest.mark.parametrize("key", [0, "0"])  # int keys in memory, str keys read back from JSON
def test_monitor_claims_hold(key):
    checks = check_monitor(_grid(key=key))
    assert len(checks) == 3 and all(c["ok"] for c in checks), checks
    assert monitor_curve(_grid(key=key)["binary_BI_B2_partial"], "empty_map_predicted_volume_ml") == [9.0, 0.5]


@pytest.mark.parametrize(
    "kw, failing",
    [
        (
            dict(i_last=3.0),
            {
                "binary: I (B=2) partial keeps predicting on the empty maps: their predicted volume ≥ 0.5× "
                "that on labelled maps (last epoch)"
            },
        ),
        (
            dict(bi_last=4.0),
            {
                "binary: BI (B=2) partial drives the predicted volume on empty maps towards 0: ≤ 0.25× that "
                "of I (B=2, last epoch)"
            },
        ),
        (
            dict(eps_last=2.5),
            {
                "binary: I_ε (B=2) partial drives the predicted volume on empty maps towards 0: ≤ 0.25× "
                "that of I (B=2, last epoch)"
            },
        ),
    ],
)
def test_each_monitor_claim_can_fail(kw, failing):
    assert {c["claim"] for c in check_monitor(_grid(**kw)) if not c["ok"]} == failing


def test_plot(tmp_path):
    assert plot_monitor(_grid(), str(tmp_path / "monitor.png"))
    assert (tmp_path / "monitor.png").stat().st_size > 5000
    assert not plot_monitor({}, str(tmp_path / "none.png"))
