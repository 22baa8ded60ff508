"""The Setting value: its name is the cache folder name caches already have, and parses back."""

import pytest

from steam_dinov2.core import layout
from steam_dinov2.embedding.setting import Setting


@pytest.mark.parametrize(
    ("setting", "tag", "precision"),
    [
        (Setting("dinov2_vits14", "crop256", "cls"), "", ""),
        (Setting("dinov2_vitb14", "full", "gem", weights="random"), "random", ""),
        (
            Setting("dino_vits16", "pad224", "cls+avg", weights="w-0123abcd4567"),
            "w-0123abcd4567",
            "",
        ),
        (Setting("dinov2_vits14", "crop256", "last4cls", precision="fp16"), "", "fp16"),
        (Setting("dinov2_vits14", "crop256", "cls", "random", precision="bf16"), "random", "bf16"),
    ],
)
def test_name_is_the_existing_cache_folder_name_and_parses_back(setting, tag, precision):
    old = layout.setting_name(
        setting.model, setting.preset, setting.pooling, weights_tag=tag, precision=precision
    )
    assert setting.name == old
    assert Setting.from_name(old) == setting


def test_create_names_weights_and_precision(tmp_path):
    assert Setting.create("dinov2_vits14", pretrained=False).name == (
        "dinov2_vits14__crop256__cls__random"
    )
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    s = Setting.create("dinov2_vits14", weights=w, device="cpu")
    assert s.weights.startswith("w-") and s.precision == "fp32" and s.weights_file == str(w)
    # The weights file is not part of the identity: the same bytes elsewhere are one setting.
    assert s == Setting(s.model, s.preset, s.pooling, weights=s.weights)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("dinov2_vits14", "model__preset__pooling"),
        ("a__b", "model__preset__pooling"),
        ("a____c", "model__preset__pooling"),
        ("a__b__c__random__x__fp16", r"unexpected part 'x'; expected model__preset__pooling\["),
        ("a__b__c__random__fp16__x", r"unexpected part 'x'; expected model__preset__pooling\["),
        ("a__b__c__fp16__random", r"part 'random' \(weights come before precision\)"),
        ("a__b__c__w-0123__w-4567", r"part 'w-4567' \(weights come before precision\)"),
    ],
)
def test_a_bad_name_is_refused_naming_the_form(name, why):
    with pytest.raises(ValueError, match=why):
        Setting.from_name(name)


def test_a_missing_weights_file_is_named_with_its_flag(tmp_path):
    missing = tmp_path / "nonexistent.pth"
    for where in (missing, tmp_path):  # not there, or a folder
        with pytest.raises(ValueError, match=rf"^weights file not found: {where} \(--weights\)$"):
            Setting.create("dinov2_vits14", weights=where)


def test_a_weights_file_setting_without_the_file_refuses_to_load():
    with pytest.raises(ValueError, match="pass that file as weights"):
        Setting("dinov2_vits14", weights="w-0123abcd4567").load_model(device="cpu")


def test_bad_precision_or_weights_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'int8'; available: fp32, bf16, fp16"):
        Setting(precision="int8")
    with pytest.raises(ValueError, match="unknown weights"):
        Setting(weights="mine")
