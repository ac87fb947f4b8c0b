"""``audiovec export``: write a model's audio and text paths as ONNX graphs (fp32 or int8) for onnxruntime."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX (fp32 or int8)",
        description=(
            "Write the audio path (log-mel features -> tower -> projector -> backbone -> pooling) and the text "
            "path as ONNX graphs with dynamic batch and length, plus the config and tokenizer. Load the folder "
            "with AudioTextEmbedder.from_pretrained(DIR) (runs in onnxruntime) or `audiovec encode DIR ...`."
        ),
    )
    p.add_argument(
        "model", metavar="MODEL", help="an audiovec model folder or a built-in name (audiovec-sounds)"
    )
    p.add_argument("--onnx", required=True, metavar="DIR", help="the new folder to write the export to")
    p.add_argument("--int8", action="store_true", help="int8 weights (onnxruntime dynamic quantisation)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.model import AudioTextEmbedder
    from audiovec.onnx_export import export_onnx

    model = AudioTextEmbedder.from_pretrained(args.model, device="cpu", dtype="fp32", backend="torch")
    out = export_onnx(model, args.onnx, int8=args.int8)
    print(f"wrote {'int8' if args.int8 else 'fp32'} ONNX export of {args.model} to {out}")
    return 0
