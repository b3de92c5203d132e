"""Combining measurements as in the study's tampering appendix."""

from __future__ import annotations

import json
import math

import pytest

from alignpt.cli import main


def _result(path, rate, n, non_match=0.0, metric="misalignment_rate"):
    path.write_text(json.dumps({"rate": rate, "n_items": n, "non_match_rate": non_match,
                                "metric": metric}))
    return str(path)


def test_inverse_variance_weighting_and_dropping(tmp_path, capsys):
    a = _result(tmp_path / "a.json", 0.4, 100)
    b = _result(tmp_path / "b.json", 0.6, 200, non_match=0.1)  # n_eff = 180
    c = _result(tmp_path / "c.json", 0.9, 100, non_match=0.2)  # dropped: >= 0.2
    out = tmp_path / "agg.json"
    assert main(["aggregate", a, b, c, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    se_a = math.sqrt(0.4 * 0.6 / 100)
    se_b = math.sqrt(0.6 * 0.4 / 180)
    w_a, w_b = 1 / se_a**2, 1 / se_b**2
    assert data["rate"] == pytest.approx((0.4 * w_a + 0.6 * w_b) / (w_a + w_b))
    assert data["sem"] == pytest.approx(math.sqrt(1 / (w_a + w_b)))
    assert (data["n_used"], data["n_dropped"]) == (2, 1)
    dropped = [i for i in data["inputs"] if i["dropped"]]
    assert dropped[0]["path"] == c and "0.200" in dropped[0]["dropped"]
    assert data["kind"] == "aggregate"
    assert "misalignment_rate:" in capsys.readouterr().out


def test_extreme_rates_do_not_get_infinite_weight(tmp_path):
    a = _result(tmp_path / "a.json", 0.0, 100)
    b = _result(tmp_path / "b.json", 0.5, 100)
    out = tmp_path / "agg.json"
    assert main(["aggregate", a, b, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert 0.0 < data["rate"] < 0.5 and data["sem"] > 0


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["aggregate", str(bad)]) == 2
    assert f"{bad}: not an alignpt eval result" in capsys.readouterr().err
    a = _result(tmp_path / "a.json", 0.5, 10)
    b = _result(tmp_path / "b.json", 0.5, 10, metric="high_trait_rate")
    assert main(["aggregate", a, b]) == 2
    assert "different metrics" in capsys.readouterr().err
    only_dropped = _result(tmp_path / "d.json", 0.5, 10, non_match=0.9)
    assert main(["aggregate", only_dropped]) == 1


def test_bias_metrics_are_carried_and_combined_by_effective_n(tmp_path, capsys):
    def with_bias(name, rate, n, non_match, first, bias, matched):
        path = tmp_path / name
        path.write_text(json.dumps({"rate": rate, "n_items": n, "non_match_rate": non_match,
                                    "metric": "misalignment_rate", "selected_first": first,
                                    "ordering_bias": bias, "rate_matched": matched}))
        return str(path)

    a = with_bias("a.json", 0.4, 100, 0.0, 0.9, 0.8, 0.4)
    b = with_bias("b.json", 0.6, 100, 0.1, 0.5, 0.0, 0.62)  # n_eff 90
    c = with_bias("c.json", 0.9, 100, 0.5, 0.1, -0.9, 0.9)  # dropped: not combined
    old = _result(tmp_path / "old.json", 0.5, 100)  # written before the bias fields
    out = tmp_path / "agg.json"
    assert main(["aggregate", a, b, c, old, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    by_path = {i["path"]: i for i in data["inputs"]}
    assert by_path[a]["ordering_bias"] == 0.8 and by_path[c]["selected_first"] == 0.1
    assert by_path[old]["selected_first"] is None and by_path[old]["rate_matched"] is None
    assert data["selected_first"] == pytest.approx((0.9 * 100 + 0.5 * 90) / 190)
    assert data["ordering_bias"] == pytest.approx((0.8 * 100 + 0.0 * 90) / 190)
    assert data["rate_matched"] == pytest.approx((0.4 * 100 + 0.62 * 90) / 190)
    captured = capsys.readouterr()
    assert "ordering_bias +0.421" in captured.out and "selected_first 0.711" in captured.out
    assert "ordering_bias -0.900" in captured.err  # the dropped input is still shown


def test_a_bias_field_that_is_not_a_number_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rate": 0.5, "n_items": 10, "non_match_rate": 0.0,
                               "ordering_bias": "high"}))
    assert main(["aggregate", str(bad)]) == 2
    assert f"{bad}: ordering_bias is not a number" in capsys.readouterr().err
