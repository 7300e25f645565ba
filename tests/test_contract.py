"""README's "Tracking contract" section and armseg/tracking/contract.py say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

from armseg.tracking import contract

README = Path(__file__).resolve().parents[1] / "README.md"


def contract_section() -> str:
    text = README.read_text()
    start = text.index("## Tracking contract")
    return text[start:text.index("\n## ", start + 1)]


def test_readme_lists_exactly_the_contract_tags() -> None:
    section = contract_section()
    listed = set(re.findall(r"`(armseg\.[a-z_]+)`", section))
    assert listed == set(contract.TAGS)
    for tag, meaning in contract.TAGS.items():
        assert f"| `{tag}` | {meaning} |" in section


def test_readme_names_the_model_alias_stages_and_metrics() -> None:
    section = contract_section()
    for name in (contract.REGISTERED_MODEL, contract.CHAMPION_ALIAS, contract.DEFAULT_EXPERIMENT,
                 *contract.STAGES, *contract.TRAIN_METRICS, *contract.EVALUATE_METRICS,
                 *contract.EPOCH_METRIC_PATTERNS, *contract.EVALUATE_METRIC_PATTERNS):
        assert f"`{name}`" in section, name


def test_metric_names_fixed_and_per_structure() -> None:
    assert contract.EVALUATE_METRICS[:6] == contract.OPENARM_METRICS
    for name in (*contract.EVALUATE_METRICS, "iou_tissue_53", "hd95_tissue_8", "percent_biceps"):
        assert contract.is_evaluate_metric(name), name
    for name in ("iou", "recall", "percent", "mean_dice", "iou_", "total_percent_humerus"):
        assert not contract.is_evaluate_metric(name), name
    assert contract.metric_scale("humerus_percent") == (0.0, 1.0)
    assert contract.metric_scale("percent_humerus") == (0.0, 100.0)
    assert contract.metric_scale("hd95_biceps") is None


def test_every_tag_constant_is_in_the_table() -> None:
    constants = {value for name, value in vars(contract).items() if name.endswith("_TAG")}
    assert constants == set(contract.TAGS)
