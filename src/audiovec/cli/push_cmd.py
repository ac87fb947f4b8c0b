"""``audiovec push``: upload a model folder (or a built-in model) to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a model folder to the Hugging Face Hub",
        description=(
            "Create REPO_ID on the Hub (if needed) and upload the model folder in one commit with "
            "huggingface_hub: weights, config, tokenizer, the README.md model card and the "
            "sentence-transformers files (generated for folders saved before audiovec wrote them). "
            "The token comes from --token, HF_TOKEN or `hf auth login`."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="an audiovec model folder or a built-in model name")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub repository, e.g. me/my-audio-model")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    p.add_argument(
        "--endpoint",
        default=os.environ.get("HF_ENDPOINT"),
        help="Hub URL (default: HF_ENDPOINT or huggingface.co)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list the files that would be uploaded, upload nothing"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiovec.hub import plan_summary, push, upload_plan

    if args.dry_run:
        print(plan_summary(upload_plan(args.model)))
        return 0
    info = push(
        args.model,
        args.repo_id,
        token=args.token,
        private=True if args.private else None,
        revision=args.revision,
        commit_message=args.message,
        endpoint=args.endpoint,
    )
    print(f"pushed {args.model} to {args.repo_id}: {info.commit_url}")
    return 0
