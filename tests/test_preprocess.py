import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import make_banner
from torchvision import transforms as T

from steam_dinov2 import make_transform
from steam_dinov2.core.codec import to_rgb
from steam_dinov2.embedding.preprocess import get_preset, normalize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BICUBIC = T.InterpolationMode.BICUBIC
# Stored banners (224x336, 256x384), Steam's 600x900, a 1/8 scale, a square, a landscape header
# (460x215) and sizes whose scale to the preset is no dyadic fraction (crops computed otherwise).
SIZES = [(224, 336), (600, 900), (256, 384), (1200, 1800), (1000, 1000), (460, 215), (333, 517)]


@pytest.mark.parametrize(
    ("preset", "geometry", "shape"),
    [
        ("crop256", [T.Resize(256, interpolation=BICUBIC), T.CenterCrop(224)], (3, 224, 224)),
        ("crop224", [T.Resize(224, interpolation=BICUBIC), T.CenterCrop(224)], (3, 224, 224)),
        ("full", [T.Resize((336, 224), interpolation=BICUBIC)], (3, 336, 224)),
    ],
)
@pytest.mark.parametrize("size", SIZES)
def test_preset_equals_its_torchvision_pipeline(preset, geometry, shape, size):
    img = make_banner(7, size=size)
    reference = T.Compose([*geometry, T.ToTensor(), T.Normalize(MEAN, STD)])(img)
    out = make_transform(preset)(img)
    assert out.shape == shape and out.dtype == torch.float32
    assert torch.equal(out, reference)
    # The loader's way: uint8 pixels, a batch of them normalised at once, gives the same bits.
    pixels = get_preset(preset).pixels(img)
    assert pixels.dtype == torch.uint8
    torch.testing.assert_close(
        normalize(torch.stack([pixels, pixels])),
        torch.stack([reference, reference]),
        rtol=0,
        atol=0,
    )


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'square'.*crop256"):
        make_transform("square")


def test_every_mode_becomes_rgb():
    rgb = make_banner(1)
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "I", "F"):
        out = to_rgb(rgb.convert(mode))
        assert out.mode == "RGB" and out.size == rgb.size, mode
    # CMYK goes through PIL's conversion, not a reinterpretation of channels.
    cmyk = np.asarray(to_rgb(rgb.convert("CMYK")), dtype=int)
    assert np.abs(cmyk - np.asarray(rgb, dtype=int)).mean() < 2


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)  # PIL picks I;16 for uint16
    assert img.mode == "I;16"
    out = np.asarray(to_rgb(img))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_transparency_composites_on_white():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert np.asarray(to_rgb(rgba)).min() == 255
    opaque = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    assert np.asarray(to_rgb(opaque))[0, 0].tolist() == [10, 20, 30]
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([200, 100, 50] + [0] * 765)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).min() == 255
