"""`diffusers-video push`: upload a saved pipeline or model folder to the Hugging Face Hub, with a model card.

    diffusers-video push FOLDER REPO_ID [--private] [--scores FILE] [--sample FILE] [--base_model ID]

FOLDER is a folder written by `save_pretrained` (a pipeline's, with model_index.json, or a model's, with
config.json), e.g. a training run's `final/` or a distilled `student-8-steps/`. It is checked first (its class, its
components, complete safetensors files, no pickled files without `--allow_pickle`) and uploaded in one commit, with:

- README.md: a model card (library, task, base model, tags, the paper, how the model was trained and distilled, its
  moving-shapes scores, a sample GIF, a usage snippet), unless FOLDER has its own README.md;
- for a pipeline, `pipeline.py` and one small file per diffusers-video component, which only import the classes from
  diffusers_video, so that `diffusers.DiffusionPipeline.from_pretrained(REPO_ID, trust_remote_code=True)` works.

The card takes the scores from `--scores` or FOLDER/quality.json (or bench_quality.json), as written by
`diffusers-video bench quality --output`, and the GIF from `--sample` or FOLDER/sample.gif. FOLDER itself is not
changed. The Hub token is the saved one (`hf auth login`) or `--token`; HF_ENDPOINT selects another Hub.
"""

from __future__ import annotations

import argparse

from ..hub import push_folder


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a pipeline or model folder to the Hub, with a model card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="FOLDER", help="a pipeline or model folder written by save_pretrained")
    parser.add_argument("repo_id", metavar="REPO_ID", help="namespace/name; created if it does not exist")
    parser.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    parser.add_argument("--scores", default=None, metavar="FILE", help="a `bench quality --output` JSON for the card")
    parser.add_argument("--sample", default=None, metavar="FILE", help="a GIF for the card (uploaded as sample.gif)")
    parser.add_argument(
        "--base_model", "--base-model", default=None, metavar="ID",
        help="Hub id of the model this one was made from, e.g. stabilityai/stable-diffusion-2-1 (default: the Hub ids "
        "in FOLDER/training_config.json)",
    )  # fmt: skip
    parser.add_argument("--commit_message", "--commit-message", default=None, help="default: 'Upload <Class> ...'")
    parser.add_argument("--create_pr", "--create-pr", action="store_true", help="open a pull request instead")
    parser.add_argument(
        "--allow_pickle", "--allow-pickle", action="store_true",
        help="also upload pickled files (.ckpt, .bin, .pt, ...), which run code when loaded",
    )  # fmt: skip
    parser.add_argument("--token", default=None, help="a Hub token (default: the saved one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `push` from parsed arguments; returns the exit code."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx  # the HTTP client huggingface_hub uses, whatever its version

    try:
        commit = push_folder(
            args.folder,
            args.repo_id,
            private=args.private or None,
            token=args.token,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
            base_model=args.base_model,
            scores=args.scores,
            sample=args.sample,
            allow_pickle=args.allow_pickle,
        )
    except HfHubHTTPError as error:
        first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(
            f"the Hub ({constants.ENDPOINT}) refused the upload to '{args.repo_id}': {first_line}"
        ) from error
    except httpx.HTTPError as error:  # no connection, timeout
        raise ValueError(
            f"could not reach the Hub ({constants.ENDPOINT}) to push '{args.repo_id}': {error}"
        ) from error
    print(f"pushed {args.folder} to {commit.repo_url} ({commit.commit_url})")
    return 0
