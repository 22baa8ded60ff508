from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from synthetic import make_banner

from steam_dinov2 import available_models, load_model, make_transform
from steam_dinov2.embedding.models import MODELS, model_info
from steam_dinov2.embedding.pooling import pool_tokens

HUB_REPO = Path(__file__).parent / "fixtures" / "hubrepo"


def _batch(seeds, preset="crop256"):
    t = make_transform(preset)
    return torch.stack([t(make_banner(s)) for s in seeds])


def test_registry_entries_are_timm_architectures_with_pretrained_weights():
    published = set(timm.list_models(pretrained=True))
    for name, spec in MODELS.items():
        assert spec.arch in published, name
        # Build every architecture on the meta device: shapes without memory or init time.
        with torch.device("meta"):
            m = timm.create_model(spec.arch, pretrained=False)
        assert m.num_features == spec.dim, name
        assert m.patch_embed.patch_size[0] == spec.patch_size, name
    rows = available_models()
    assert [r["name"] for r in rows] == list(MODELS)
    assert {"dinov2_vits14_reg", "dino_vitb8", "dinov3_vitl16"} <= {r["name"] for r in rows}


@pytest.mark.parametrize("name", ["dinov2_vits14_reg", "dino_vits16", "dinov3_vits16"])
def test_small_models_instantiate_and_embed_the_full_banner(name):
    model = load_model(name, pretrained=False, device="cpu")
    assert not model.training
    x = _batch([1, 2], preset="full")  # 224x336: position embeddings interpolated
    with torch.inference_mode():
        out = pool_tokens(model, x, "cls")
    assert out.shape == (2, MODELS[name].dim)
    assert model_info(model).weights_tag == "random"


def test_model_info_lives_beside_the_model_not_on_it():
    model = load_model("dinov2_vits14", pretrained=False, device="cpu")
    info = model_info(model)
    assert (info.name, info.weights_tag, info.dim, info.patch_size) == (
        "dinov2_vits14",
        "random",
        384,
        14,
    )
    assert not hasattr(model, "steam_info")
    # A model made elsewhere has no info: pooling it says how to get one, not a KeyError.
    other = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56)
    with pytest.raises(ValueError, match="was not loaded by load_model"):
        pool_tokens(other, torch.zeros(1, 3, 56, 56), "cls")


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'dinov9'.*dinov2_vits14"):
        load_model("dinov9", pretrained=False)


def test_pretrained_offline_fails_and_names_the_offline_way():
    with pytest.raises(RuntimeError, match="weights=PATH"):
        load_model("dino_vits16", pretrained=True)


@pytest.mark.parametrize("pretrained", [True, False])
def test_a_model_without_patch_tokens_is_refused_by_name(pretrained):
    with pytest.raises(ValueError, match="'resnet18' is not a vision transformer"):
        load_model("resnet18", pretrained=pretrained)


def test_hub_random_weights_are_seeded():
    a = load_model(f"hub:{HUB_REPO}:dinov2_unseeded", pretrained=False, device="cpu")
    b = load_model(f"hub:{HUB_REPO}:dinov2_unseeded", pretrained=False, device="cpu")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_unreachable_github_hub_fails_with_the_offline_way(tmp_path, monkeypatch):
    # No network here: torch.hub cannot reach GitHub, which is exactly the failure to report.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="weights=PATH"):
        load_model("hub:facebookresearch/dinov2:dinov2_vits14", pretrained=True)


def test_random_weights_are_seeded_and_discriminative(vits14):
    # LayerScale starts at 1.0 as in the official DINOv2 code, not timm's 1e-5.
    gammas = [p for n, p in vits14.named_parameters() if n.endswith(".gamma")]
    assert gammas and all(torch.all(g == 1.0) for g in gammas)
    again = load_model("dinov2_vits14", pretrained=False, device="cpu")
    x = _batch(range(1, 9))
    with torch.inference_mode():
        a, b = pool_tokens(vits14, x, "cls"), pool_tokens(again, x, "cls")
    assert torch.equal(a, b)
    cos = (a @ a.T).numpy()[np.triu_indices(8, 1)]
    assert np.median(cos) < 0.8, "random model maps unrelated banners to the same vector"
    copy = make_transform("crop256")(make_banner(1).resize((220, 330)).resize((224, 336)))
    with torch.inference_mode():
        c = pool_tokens(vits14, copy[None], "cls")
    assert float(c @ a[0]) > 0.95
    assert float(c @ a[0]) > cos.max()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_round_trip(tmp_path, vits14, suffix):
    sd = {k: v.clone() for k, v in vits14.state_dict().items()}
    with torch.no_grad():  # different weights from the seeded ones, to prove they were loaded
        sd["blocks.0.attn.qkv.weight"] += 0.5
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, path)
    else:
        # The official DINOv2 checkpoint format carries mask_token; timm's filter drops it.
        torch.save({**sd, "mask_token": torch.zeros(1, 384)}, path)
    model = load_model("dinov2_vits14", weights=path, device="cpu")
    assert model_info(model).weights_tag.startswith("w-")
    ref = load_model("dinov2_vits14", pretrained=False, device="cpu")
    ref.load_state_dict(sd)
    x = _batch([4, 5])
    with torch.inference_mode():
        assert torch.equal(pool_tokens(model, x, "gem"), pool_tokens(ref, x, "gem"))
        assert not torch.allclose(pool_tokens(model, x, "cls"), pool_tokens(vits14, x, "cls"))


def test_weights_that_do_not_fit_are_refused(tmp_path, vits14):
    path = tmp_path / "b.pth"
    torch.save(vits14.state_dict(), path)
    with pytest.raises(ValueError, match="does not fit"):
        load_model("dino_vitb16", weights=path, device="cpu")
    with pytest.raises(ValueError, match=r"^weights file not found: .*missing.pth \(--weights\)$"):
        load_model("dinov2_vits14", weights=tmp_path / "missing.pth")


def test_torch_hub_path_pools_like_timm(vits14):
    hub = load_model(f"hub:{HUB_REPO}:dinov2_tiny", pretrained=False, device="cpu")
    timm_model = load_model("vit_small_patch14_reg4_dinov2", pretrained=False, device="cpu")
    timm_model.load_state_dict(hub.vit.state_dict())
    assert model_info(hub).num_prefix_tokens == 5
    x = _batch([1, 2])
    with torch.inference_mode():
        for pooling in ("cls", "cls+avg", "last4cls", "gem"):
            a, b = pool_tokens(hub, x, pooling), pool_tokens(timm_model, x, pooling)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
