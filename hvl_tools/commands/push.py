"""hvl push CHECKPOINT --repo org/name — upload a trained head (+ model card) to the Hugging Face hub."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "push",
        help="push a checkpoint with its model card to the Hugging Face hub",
        description="Validate CHECKPOINT, write a model card (README.md with hub metadata; evaluation numbers "
        "from --eval-dir), and upload model.safetensors, config.json, README.md (and training/eval files) "
        "with HfApi().upload_folder. Needs a token (HF_TOKEN or huggingface-cli login). --dry-run "
        "DIR only stages the files locally.",
    )
    p.add_argument("checkpoint", help="local checkpoint folder")
    p.add_argument("--repo", required=True, help="hub model repo id, org/name")
    p.add_argument("--eval-dir", help="an hvl evaluate output folder to put in the card and under eval/")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="hub token (default: HF_TOKEN / the saved login)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--dry-run", metavar="DIR", help="stage the files in DIR and upload nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_core import CheckpointError
    from hvl_tools.publish import push_checkpoint, stage

    from .common import fail

    try:
        if args.dry_run:
            d = stage(args.checkpoint, args.dry_run, args.repo, args.eval_dir)
            print(f"staged {', '.join(sorted(p.name for p in d.iterdir()))} in {d}")
            return 0
        info = push_checkpoint(
            args.checkpoint,
            args.repo,
            args.eval_dir,
            private=args.private or None,
            token=args.token,
            commit_message=args.message,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except Exception as e:  # the hub client raises many kinds (auth, network, HTTP)
        fail(f"could not push to {args.repo}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    print(
        f"pushed {args.checkpoint} to https://huggingface.co/{args.repo}"
        + (f" ({getattr(info, 'oid', '')[:10]})" if getattr(info, "oid", None) else ""),
        file=sys.stderr,
    )
    print(args.repo)
    return 0
